// Draws the headline ratios of bench/results/latest.json as an SVG bar chart
// (bench/results/headline.svg): every table row that has a ratio and a
// target. No dependencies: `node bench/scripts/chart.mjs [in.json] [out.svg]`.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const input = process.argv[2] ?? join(here, '..', 'results', 'latest.json');
const output = process.argv[3] ?? join(here, '..', 'results', 'headline.svg');
const results = JSON.parse(readFileSync(input, 'utf8'));

const firstNumber = (text) => {
  const m = /(\d+(?:\.\d+)?)×/.exec(text ?? '');
  return m === null ? undefined : Number(m[1]);
};
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const bars = [];
for (const section of results.sections) {
  for (const row of section.rows) {
    const value = firstNumber(row.ratio);
    const target = firstNumber(row.target);
    if (value === undefined || target === undefined) continue;
    // Rows named after the peer carry lading's ratio to it ("lading 1.2×").
    const full = row.ratio.startsWith('lading') ? `lading ÷ ${row.name}` : row.name;
    const name = full.length > 78 ? `${full.slice(0, 75)}…` : full;
    bars.push({ name, value, target, met: row.met, higherIsBetter: /≥/.test(row.target) });
  }
}

const labelW = 560;
const barW = 380;
const rowH = 24;
const top = 48;
const max = Math.max(1.2, ...bars.map((b) => Math.max(b.value, b.target))) * 1.08;
const x = (v) => Math.round((labelW + (v / max) * barW) * 10) / 10;
const height = top + bars.length * rowH + 36;
const parts = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 70}" height="${height}" font-family="sans-serif" font-size="12">`,
  `<rect width="100%" height="100%" fill="#fff"/>`,
  `<text x="8" y="20" font-size="15" font-weight="bold">lading bench: headline ratios (run of ${esc(results.date)})</text>`,
  `<text x="8" y="38" fill="#555">bar = measured ratio (median); black tick = target; green = target met, red = missed. 1× = parity.</text>`,
  `<line x1="${x(1)}" y1="${top - 4}" x2="${x(1)}" y2="${top + bars.length * rowH}" stroke="#999" stroke-dasharray="3,3"/>`,
];
bars.forEach((b, i) => {
  const y = top + i * rowH;
  const color = b.met === true ? '#2e9d4a' : b.met === false ? '#d0453b' : '#888';
  parts.push(
    `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(b.name)}</text>`,
    `<rect x="${labelW}" y="${y + 4}" width="${Math.max(1, x(b.value) - labelW)}" height="${rowH - 8}" fill="${color}"/>`,
    `<line x1="${x(b.target)}" y1="${y + 1}" x2="${x(b.target)}" y2="${y + rowH - 1}" stroke="#000" stroke-width="2"/>`,
    `<text x="${x(Math.max(b.value, b.target)) + 6}" y="${y + 16}">${b.value.toFixed(2)}×${b.higherIsBetter ? ' (≥)' : ''}</text>`,
  );
});
const axisY = top + bars.length * rowH + 16;
for (let v = 0; v <= max; v += max > 4 ? 1 : 0.5) {
  parts.push(`<text x="${x(v)}" y="${axisY}" text-anchor="middle" fill="#555">${v}×</text>`);
}
parts.push('</svg>');
writeFileSync(output, `${parts.join('\n')}\n`);
process.stdout.write(`wrote ${output} (${bars.length} ratios)\n`);
