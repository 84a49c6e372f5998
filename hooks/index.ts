/** Group hooks (ViViT computations). */
export {};
