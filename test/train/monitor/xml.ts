/**
 * A strict little XML parser for the SVG tests (independent of the writer):
 * elements, attributes (quoted, unique), text, comments, the XML
 * declaration; entities limited to the five predefined ones and numeric
 * references. Throws on anything malformed (unbalanced tags, bare `&` or
 * `<`, unquoted attributes, text outside the root).
 */
export interface XmlElement {
  readonly name: string;
  readonly attrs: Record<string, string>;
  readonly children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;

function decode(s: string, where: number): string {
  return s.replace(/&([^;]*);|&/g, (m, ent: string | undefined) => {
    if (ent === undefined) throw new Error(`xml: bare '&' near offset ${where}`);
    const map: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (ent in map) return map[ent] as string;
    if (/^#[0-9]+$/.test(ent)) return String.fromCodePoint(Number(ent.slice(1)));
    if (/^#x[0-9a-fA-F]+$/.test(ent)) return String.fromCodePoint(parseInt(ent.slice(2), 16));
    throw new Error(`xml: unknown entity '${m}' near offset ${where}`);
  });
}

export function parseXml(src: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const skipWs = () => {
    while (i < src.length && /\s/.test(src[i] as string)) i++;
  };
  while (i < src.length) {
    if (src.startsWith('<?', i)) {
      const end = src.indexOf('?>', i);
      if (end < 0) throw new Error('xml: unterminated declaration');
      if (root !== undefined || stack.length > 0) throw new Error('xml: declaration after the root element');
      i = end + 2;
    } else if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i);
      if (end < 0) throw new Error('xml: unterminated comment');
      i = end + 3;
    } else if (src.startsWith('</', i)) {
      i += 2;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error(`xml: bad closing tag at ${i}`);
      i += m[0].length;
      skipWs();
      if (src[i] !== '>') throw new Error(`xml: bad closing tag '${m[0]}' at ${i}`);
      i++;
      const open = stack.pop();
      if (open === undefined || open.name !== m[0]) throw new Error(`xml: closing </${m[0]}> does not match <${open?.name}>`);
      if (stack.length === 0) root = open;
    } else if (src[i] === '<') {
      i++;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error(`xml: bad tag at ${i}`);
      i += m[0].length;
      const el: XmlElement = { name: m[0], attrs: {}, children: [], text: '' };
      for (;;) {
        const ws = i;
        skipWs();
        if (src.startsWith('/>', i) || src[i] === '>') break;
        if (i === ws) throw new Error(`xml: missing space before attribute in <${el.name}> at ${i}`);
        const a = NAME.exec(src.slice(i));
        if (!a) throw new Error(`xml: bad attribute in <${el.name}> at ${i}`);
        i += a[0].length;
        skipWs();
        if (src[i] !== '=') throw new Error(`xml: attribute '${a[0]}' without value`);
        i++;
        skipWs();
        const q = src[i];
        if (q !== '"' && q !== "'") throw new Error(`xml: attribute '${a[0]}' is not quoted`);
        const end = src.indexOf(q, i + 1);
        if (end < 0) throw new Error('xml: unterminated attribute');
        const raw = src.slice(i + 1, end);
        if (raw.includes('<')) throw new Error(`xml: '<' in attribute '${a[0]}'`);
        if (a[0] in el.attrs) throw new Error(`xml: duplicate attribute '${a[0]}' in <${el.name}>`);
        el.attrs[a[0]] = decode(raw, i);
        i = end + 1;
      }
      const parent = stack[stack.length - 1];
      if (parent === undefined && root !== undefined) throw new Error('xml: two root elements');
      parent?.children.push(el);
      if (src.startsWith('/>', i)) {
        i += 2;
        if (parent === undefined) root = el;
      } else {
        i++;
        stack.push(el);
      }
    } else {
      const end = src.indexOf('<', i);
      const text = src.slice(i, end < 0 ? src.length : end);
      const top = stack[stack.length - 1];
      if (top === undefined) {
        if (text.trim() !== '') throw new Error('xml: text outside the root element');
      } else top.text += decode(text, i);
      i = end < 0 ? src.length : end;
    }
  }
  if (stack.length > 0) throw new Error(`xml: unclosed <${stack[stack.length - 1]?.name}>`);
  if (root === undefined) throw new Error('xml: no root element');
  return root;
}

/** Every element below (and including) `el`, depth first. */
export function allElements(el: XmlElement): XmlElement[] {
  return [el, ...el.children.flatMap(allElements)];
}
