// A scrolling line chart of every label's score over stream time, drawn on a canvas.

// Okabe and Ito's colour-blind-safe palette; past eight labels the lines are dashed too.
const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#B8A000"];
const DASHES = [[], [6, 3], [2, 3]];

export function colourOf(index) {
  return COLOURS[index % COLOURS.length];
}

export class ScoreChart {
  /** `spanS`: how many seconds of stream time the chart shows before it scrolls. */
  constructor(canvas, legend, spanS = 30) {
    this.canvas = canvas;
    this.legend = legend;
    this.spanS = spanS;
    this.labels = [];
    this.points = [];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Starts over with these labels (a new stream). */
  reset(labels) {
    this.labels = labels;
    this.points = [];
    this.legend.replaceChildren(...labels.map((label, index) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(index);
      if (index >= COLOURS.length) swatch.classList.add("dashed");
      item.append(swatch, label);
      return item;
    }));
    this.draw();
  }

  /** Adds one window's scores, placed at the window's end in stream time. */
  add(endMs, scores) {
    this.points.push({ t: endMs / 1000, scores });
    const oldest = endMs / 1000 - this.spanS - 5; // one point past the left edge stays
    while (this.points.length > 2 && this.points[1].t < oldest) this.points.shift();
    this.draw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (this.canvas.width !== Math.round(width * ratio)) this.canvas.width = Math.round(width * ratio);
    if (this.canvas.height !== Math.round(height * ratio)) this.canvas.height = Math.round(height * ratio);
    const g = this.canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 34;
    const right = 18;
    const top = 8;
    const bottom = 22;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const latest = this.points.length ? this.points[this.points.length - 1].t : 0;
    // The time axis grows with the stream from 10 s up to spanS, then scrolls.
    const span = Math.min(this.spanS, Math.max(10, Math.ceil(latest / 5) * 5));
    const end = Math.max(span, latest);
    const start = end - span;
    const x = (t) => left + ((t - start) / span) * plotW;
    const y = (score) => top + (1 - score) * plotH;

    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#555";
    g.strokeStyle = "#ddd";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const score of [0, 0.25, 0.5, 0.75, 1]) {
      g.beginPath();
      g.moveTo(left, y(score));
      g.lineTo(left + plotW, y(score));
      g.stroke();
      g.fillText(score.toFixed(2).replace(/0$/, ""), left - 4, y(score));
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    const tick = span > 40 ? 10 : span > 15 ? 5 : 2;
    for (let t = Math.ceil(start / tick) * tick; t <= end; t += tick) {
      g.beginPath();
      g.moveTo(x(t), top);
      g.lineTo(x(t), top + plotH);
      g.stroke();
      g.fillText(`${t} s`, x(t), top + plotH + 5);
    }

    g.save();
    g.beginPath();
    g.rect(left, top, plotW, plotH);
    g.clip();
    g.lineWidth = 2;
    g.lineJoin = "round";
    this.labels.forEach((_, index) => {
      g.strokeStyle = colourOf(index);
      g.setLineDash(DASHES[Math.floor(index / COLOURS.length) % DASHES.length]);
      g.beginPath();
      this.points.forEach((point, i) => {
        const px = x(point.t);
        const py = y(point.scores[index] || 0);
        if (i === 0) g.moveTo(px, py);
        else g.lineTo(px, py);
      });
      g.stroke();
      if (this.points.length === 1) {
        g.fillStyle = colourOf(index);
        g.fillRect(x(this.points[0].t) - 2, y(this.points[0].scores[index] || 0) - 2, 4, 4);
      }
    });
    g.restore();
  }
}
