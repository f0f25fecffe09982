// A small markdown renderer for the assistant's answers. Safety first: the whole text is
// HTML-escaped before any markup is recognised, so the only tags in the output are the ones this
// file writes, and a link's target must start with http:// or https://.
//
// Supported: headings, paragraphs (single newlines kept as <br>), **bold**, *italic*, ~~struck~~,
// `inline code`, fenced code blocks, - / 1. lists, > quotes, --- rules, [links](https://…), bare
// http(s) URLs, and | tables | with alignment.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text → HTML text (safe in element content and in double- or single-quoted attributes). */
export const escapeHtml = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);

/** Markdown → HTML. */
export function renderMarkdown(source) {
  const clean = String(source ?? '').replace(/\r\n?/g, '\n').replace(/\u0000/g, '');
  return renderLines(escapeHtml(clean).split('\n'));
}

const FENCE = /^\s*(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s*&gt;\s?/;
const ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;

// Renders lines that are already escaped.
function renderLines(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !(lines[i].trim().startsWith(fence[1]) && lines[i].trim().replace(/[`~]/g, '') === '')) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1;
      const lang = fence[2] ? ` data-lang="${fence[2]}"` : '';
      out.push(`<pre><code${lang}>${body.join('\n')}</code></pre>`);
      continue;
    }
    if (line.trim() === '') {
      i += 1;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = heading[1].length;
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out.push('<hr>');
      i += 1;
      continue;
    }
    if (isTableRow(line) && i + 1 < lines.length && isSeparator(lines[i + 1])) {
      const header = cells(line);
      const aligns = cells(lines[i + 1]).map(alignOf);
      i += 2;
      const rows = [];
      while (i < lines.length && isTableRow(lines[i])) {
        rows.push(cells(lines[i]));
        i += 1;
      }
      out.push(table(header, aligns, rows));
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        body.push(lines[i].replace(QUOTE, ''));
        i += 1;
      }
      out.push(`<blockquote>${renderLines(body)}</blockquote>`);
      continue;
    }
    const first = ITEM.exec(line);
    if (first) {
      const ordered = /\d/.test(first[1]);
      const items = [];
      while (i < lines.length) {
        const item = ITEM.exec(lines[i]);
        if (item && /\d/.test(item[1]) === ordered) {
          items.push(item[2]);
          i += 1;
        } else if (items.length && !item && /^\s{2,}\S/.test(lines[i])) {
          items[items.length - 1] += ` ${lines[i].trim()}`;
          i += 1;
        } else {
          break;
        }
      }
      const tag = ordered ? 'ol' : 'ul';
      const start = ordered && parseInt(first[1], 10) !== 1 ? ` start="${parseInt(first[1], 10)}"` : '';
      out.push(`<${tag}${start}>${items.map((t) => `<li>${inline(t)}</li>`).join('')}</${tag}>`);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() !== '' && !startsBlock(lines, i)) {
      paragraph.push(inline(lines[i].trim()));
      i += 1;
    }
    out.push(`<p>${paragraph.join('<br>')}</p>`);
  }
  return out.join('\n');
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line)
    || (isTableRow(line) && i + 1 < lines.length && isSeparator(lines[i + 1]));
}

const isTableRow = (line) => /^\s*\|.*\|\s*$/.test(line);
const isSeparator = (line) => /^\s*\|?(\s*:?-{2,}:?\s*\|)+\s*(:?-{2,}:?\s*)?\|?\s*$/.test(line);

function cells(line) {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

function alignOf(separator) {
  const left = separator.startsWith(':');
  const right = separator.endsWith(':');
  if (left && right) return 'center';
  if (right) return 'right';
  return '';
}

function table(header, aligns, rows) {
  // A column of numbers only (years, amounts) is right-aligned, its header too.
  const numeric = header.map((_, j) => rows.length > 0 && rows.every((r) => /\d/.test(r[j] ?? '') && /^[-+]?[\d,.\s%$€£]+$/.test(r[j] ?? '')));
  const cls = (j) => {
    const align = aligns[j] || (numeric[j] ? 'right' : '');
    return align ? ` class="align-${align}"` : '';
  };
  const head = header.map((h, j) => `<th${cls(j)}>${inline(h)}</th>`).join('');
  const body = rows
    .map((row) => `<tr>${header.map((_, j) => `<td${cls(j)}>${inline(row[j] ?? '')}</td>`).join('')}</tr>`)
    .join('');
  return `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

// Inline markup on escaped text. Code spans and links are set aside first so that emphasis
// markers inside them (a URL's underscores) stay as they are.
function inline(text) {
  const held = [];
  const hold = (html) => {
    held.push(html);
    return `\u0000${held.length - 1}\u0000`;
  };
  let out = text.replace(/`([^`]+)`/g, (_, code) => hold(`<code>${code}</code>`));
  out = out.replace(/\[([^\]]+)\]\((https?:\/\/[^\s()]+)\)/g, (_, label, url) => hold(anchor(url, emphasis(label))));
  out = out.replace(/\bhttps?:\/\/[^\s<]+/g, (match) => {
    const url = match.replace(/([.,;:!?)\]]|&#39;|&quot;)+$/, '');
    return hold(anchor(url, url)) + match.slice(url.length);
  });
  out = emphasis(out);
  return out.replace(/\u0000(\d+)\u0000/g, (_, n) => held[Number(n)]);
}

const anchor = (url, label) => `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;

function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)([^*]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)(.*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1<em>$2</em>')
    .replace(/~~(?=\S)(.*?\S)~~/g, '<del>$1</del>');
}
