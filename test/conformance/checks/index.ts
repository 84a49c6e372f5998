/**
 * Every quantity of FORMAT.md §6 in a fixed order. Quantities curvpack does
 * not implement yet are reported `skip`, never `pass`.
 */
import { firstOrderChecks } from './firstOrder';
import { secondOrderChecks } from './secondOrder';
import { kroneckerChecks } from './kronecker';
import { operatorChecks } from './operators';
import { vivitChecks } from './vivit';
import { influenceChecks } from './influence';
import { hasQuantity, type QuantityCheck } from './types';

export const ALL_QUANTITIES = [
  'loss', 'grad', 'batch_grad', 'batch_l2_grad', 'sum_grad_squared', 'variance',
  'diag_ggn_exact', 'batch_diag_ggn_exact', 'sqrt_ggn_exact', 'output_jacobian', 'diag_hessian',
  'hessian', 'ggn', 'kflr', 'kfra', 'ekfac', 'vivit', 'influence',
] as const;

function notImplemented(name: string): QuantityCheck {
  return { name, present: hasQuantity(name), run: () => ({ status: 'skip', note: 'not implemented yet' }) };
}

const implemented: QuantityCheck[] = [...firstOrderChecks, ...secondOrderChecks, ...kroneckerChecks, ...operatorChecks, ...vivitChecks, ...influenceChecks];

export const CHECKS: QuantityCheck[] = ALL_QUANTITIES.map(
  (q) => implemented.find((c) => c.name === q) ?? notImplemented(q),
);
