// A rolling plot of the joint state: the last `windowS` seconds, one line per field, auto-scaled.
const COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f'];

export class RollingPlot {
  private samples: { t: number; values: number[] }[] = [];

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly names: string[],
    private readonly windowS = 10,
  ) {}

  add(tS: number, values: number[]): void {
    this.samples.push({ t: tS, values });
    const cutoff = tS - this.windowS;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].t < cutoff) drop++;
    if (drop) this.samples.splice(0, drop);
  }

  draw(): void {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    if (this.samples.length < 2) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.samples) for (const v of s.values) if (Number.isFinite(v)) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
    if (!Number.isFinite(lo)) return;
    if (hi - lo < 1e-6) (lo -= 0.5), (hi += 0.5);
    const t1 = this.samples[this.samples.length - 1].t;
    const x = (t: number): number => ((t - (t1 - this.windowS)) / this.windowS) * width;
    const y = (v: number): number => height - 4 - ((v - lo) / (hi - lo)) * (height - 8);
    ctx.font = '11px sans-serif';
    this.names.forEach((name, i) => {
      ctx.strokeStyle = COLOURS[i % COLOURS.length];
      ctx.beginPath();
      this.samples.forEach((s, k) => (k ? ctx.lineTo(x(s.t), y(s.values[i])) : ctx.moveTo(x(s.t), y(s.values[i]))));
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(name, 6 + (i % 3) * 110, 12 + Math.floor(i / 3) * 13);
    });
    ctx.fillStyle = '#888';
    ctx.fillText(`${hi.toFixed(2)}`, width - 40, 12);
    ctx.fillText(`${lo.toFixed(2)}`, width - 40, height - 4);
  }
}
