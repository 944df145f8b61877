// Hand-written SVG bar chart of bench results: req/s per configuration, read and write side by side.
const COLORS = { read: '#3b7dd8', write: '#e8873a' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceMax(x: number): number {
  if (x <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

export function renderSvg(results: any): string {
  const configs: string[] = results.configs;
  const labels: Record<string, string> = results.labels ?? {};
  const summary = results.summary;
  const W = 860;
  const H = 400;
  const left = 64;
  const right = 16;
  const top = 58;
  const bottom = 70;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const max = niceMax(
    Math.max(1, ...configs.flatMap((c) => [summary[c]?.read?.rps ?? 0, summary[c]?.write?.rps ?? 0])),
  );
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const groupW = plotW / Math.max(1, configs.length);
  const barW = Math.min(36, groupW * 0.34);
  const s = results.settings ?? {};
  const m = results.machine ?? {};
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `<text x="${left}" y="22" font-size="15" font-weight="bold" fill="#222">express-session stores: requests/s (higher is better)</text>`,
  );
  out.push(
    `<text x="${left}" y="40" font-size="11" fill="#555">${esc(`median of ${s.rounds} rounds x ${s.duration} s, ${s.connections} connections, ${m.cpus} cores, load generator and server on the same machine, ${m.node ?? ''}`)}</text>`,
  );
  // Grid and axis.
  for (let i = 0; i <= 5; i++) {
    const v = (max / 5) * i;
    const yy = y(v).toFixed(1);
    out.push(
      `<line x1="${left}" x2="${W - right}" y1="${yy}" y2="${yy}" stroke="${i ? '#e5e5e5' : '#888'}" stroke-width="1"/>`,
    );
    out.push(
      `<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" font-size="10" text-anchor="end" fill="#555">${Math.round(v).toLocaleString('en-US')}</text>`,
    );
  }
  configs.forEach((c, i) => {
    const cx = left + groupW * i + groupW / 2;
    (['read', 'write'] as const).forEach((route, j) => {
      const v = summary[c]?.[route]?.rps ?? 0;
      const x = cx + (j === 0 ? -barW - 2 : 2);
      const yy = y(v);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW.toFixed(1)}" height="${(top + plotH - yy).toFixed(1)}" fill="${COLORS[route]}"><title>${esc(`${labels[c] ?? c} ${route}: ${Math.round(v)} req/s`)}</title></rect>`,
      );
      out.push(
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 4).toFixed(1)}" font-size="10" text-anchor="middle" fill="#333">${Math.round(v).toLocaleString('en-US')}</text>`,
      );
    });
    // Label, wrapped on the first space after ~12 characters.
    const label = labels[c] ?? c;
    const words = label.split(' ');
    const lines: string[] = [];
    for (const w of words) {
      if (lines.length && (lines[lines.length - 1] + ' ' + w).length <= 13) lines[lines.length - 1] += ' ' + w;
      else lines.push(w);
    }
    lines.forEach((line, k) => {
      out.push(
        `<text x="${cx.toFixed(1)}" y="${top + plotH + 16 + k * 13}" font-size="11" text-anchor="middle" fill="#222">${esc(line)}</text>`,
      );
    });
  });
  // Legend.
  const lx = W - right - 150;
  out.push(
    `<rect x="${lx}" y="12" width="12" height="12" fill="${COLORS.read}"/><text x="${lx + 17}" y="22" font-size="11" fill="#222">read (unchanged)</text>`,
  );
  out.push(
    `<rect x="${lx}" y="30" width="12" height="12" fill="${COLORS.write}"/><text x="${lx + 17}" y="40" font-size="11" fill="#222">write (1 attribute)</text>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
