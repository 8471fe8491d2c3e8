/** A line diff for `policy apply --dry-run`: unchanged lines ' ', removed '-', added '+'. */
export function lineDiff(before: string, after: string, context = 3): string[] {
  const a = before.split('\n');
  const b = after.split('\n');
  // Longest common subsequence table, from the end.
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const ops: Array<[' ' | '-' | '+', string]> = [];
  let i = 0; let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { ops.push([' ', a[i]]); i++; j++; }
    else if (i < a.length && (j >= b.length || lcs[i + 1][j] >= lcs[i][j + 1])) ops.push(['-', a[i++]]);
    else ops.push(['+', b[j++]]);
  }
  // Keep changed lines and `context` lines around them.
  const keep = ops.map(() => false);
  ops.forEach(([k], n) => { if (k !== ' ') for (let m = Math.max(0, n - context); m <= Math.min(ops.length - 1, n + context); m++) keep[m] = true; });
  const out: string[] = [];
  ops.forEach(([k, line], n) => {
    if (keep[n]) out.push(`${k} ${line}`);
    else if (n > 0 && keep[n - 1]) out.push('  ...');
  });
  return out;
}
