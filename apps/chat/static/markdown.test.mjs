// node --test apps/chat/static/markdown.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderMarkdown, escapeHtml } from './markdown.js';

test('HTML in the text is escaped, never interpreted', () => {
  const html = renderMarkdown('<script>alert(1)</script> <img src=x onerror="a()"> **<b>x</b>**');
  assert.ok(!html.includes('<script'));
  assert.ok(!html.includes('<img'));
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(html.includes('<strong>&lt;b&gt;x&lt;/b&gt;</strong>'));
  assert.equal(escapeHtml(`"'&<>`), '&quot;&#39;&amp;&lt;&gt;');
});

test('links: only http(s), attributes cannot be broken out of', () => {
  assert.equal(
    renderMarkdown('[Q3 plan](https://notes.example/p/q3_launch_plan)'),
    '<p><a href="https://notes.example/p/q3_launch_plan" target="_blank" rel="noopener noreferrer">Q3 plan</a></p>',
  );
  const js = renderMarkdown('[x](javascript:alert(1)) [y](data:text/html,hi)');
  assert.ok(!js.includes('<a '), js);
  const quoted = renderMarkdown('[x](https://a.example/"onmouseover="alert(1))');
  assert.ok(!quoted.includes('"onmouseover'), quoted);
  assert.ok(renderMarkdown('see https://a.example/x_y_z.').includes('<a href="https://a.example/x_y_z" target="_blank" rel="noopener noreferrer">https://a.example/x_y_z</a>.'));
});

test('headings, emphasis, code', () => {
  assert.equal(renderMarkdown('## Sales *by* year'), '<h2>Sales <em>by</em> year</h2>');
  assert.equal(renderMarkdown('use `a_b_c` and **bold** ~~old~~ snake_case_name'),
    '<p>use <code>a_b_c</code> and <strong>bold</strong> <del>old</del> snake_case_name</p>');
  assert.equal(renderMarkdown('```sql\nSELECT * FROM t WHERE a < 1\n```'),
    '<pre><code data-lang="sql">SELECT * FROM t WHERE a &lt; 1</code></pre>');
  assert.equal(renderMarkdown('```\nunclosed'), '<pre><code>unclosed</code></pre>');
});

test('lists, quotes, paragraphs', () => {
  assert.equal(renderMarkdown('- one\n- two\n  more'), '<ul><li>one</li><li>two more</li></ul>');
  assert.equal(renderMarkdown('3. c\n4. d'), '<ol start="3"><li>c</li><li>d</li></ol>');
  assert.equal(renderMarkdown('> quoted\n> text'), '<blockquote><p>quoted<br>text</p></blockquote>');
  assert.equal(renderMarkdown('a\nb\n\nc'), '<p>a<br>b</p>\n<p>c</p>');
});

test('tables with alignment and numeric cells', () => {
  const html = renderMarkdown('Sales:\n\n| Year | Sales |\n|---|---:|\n| 2022 | 1,234.50 |\n| 2023 | 2,000.00 |');
  assert.ok(html.includes('<table><thead><tr><th class="align-right">Year</th><th class="align-right">Sales</th></tr></thead>'), html);
  const words = renderMarkdown('| Name | Rows |\n|---|---|\n| orders | 12 |');
  assert.ok(words.includes('<th>Name</th><th class="align-right">Rows</th>'), words);
  assert.ok(words.includes('<td>orders</td><td class="align-right">12</td>'), words);
  assert.ok(html.includes('<td class="align-right">2022</td><td class="align-right">1,234.50</td>'), html);
  assert.equal((html.match(/<tr>/g) ?? []).length, 3);
});
