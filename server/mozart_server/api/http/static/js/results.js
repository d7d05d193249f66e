// The result views: the current label, the top-k bars, the chart, notices and the summary.

import { ScoreChart, colourOf } from "./chart.js";

const percent = (score) => `${(100 * score).toFixed(1)} %`;
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const END_REASONS = { COMPLETE: "complete", DRAINED: "cut short: the server is shutting down" };

function element(tag, properties = {}) {
  return Object.assign(document.createElement(tag), properties);
}

/** Fills a list with one row per label: name, a bar in the label's chart colour, percent. */
function renderBars(list, topK, labels) {
  list.replaceChildren(...topK.map(({ label, score }) => {
    const bar = element("span", { className: "bar" });
    bar.setAttribute("aria-hidden", "true");
    const fill = element("span", { className: "fill" });
    fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    fill.style.background = colourOf(Math.max(0, labels.indexOf(label)));
    bar.append(fill);
    const item = element("li");
    item.append(element("span", { textContent: label }), bar,
      element("span", { className: "score", textContent: percent(score) }));
    return item;
  }));
}

/** What the page shows of one stream or file; `windows` counts the results so far. */
export class ResultsView {
  constructor({ currentLabel, currentWindow, topK, windowCount, notices, summary, chart, legend }) {
    this.ui = { currentLabel, currentWindow, topK, windowCount, notices, summary };
    this.chart = new ScoreChart(chart, legend);
    this.reset([]);
  }

  /** Starts over for a stream whose scores come in `labels` order. */
  reset(labels) {
    this.labels = labels;
    this.windows = 0;
    this.shownLabel = "";
    this.ui.windowCount.textContent = "0";
    this.ui.currentLabel.textContent = "—";
    this.ui.currentWindow.textContent = "No window yet.";
    this.ui.topK.replaceChildren();
    this.ui.notices.replaceChildren();
    this.ui.summary.replaceChildren(
      element("p", { className: "hint", textContent: "Appears when the stream or file is done." }));
    this.chart.reset(labels);
  }

  /** One window's result (a WebSocket "window" message, or a REST window). */
  addWindow(window) {
    const smoothed = window.smoothed_top_k && window.smoothed_top_k.length;
    const topK = smoothed ? window.smoothed_top_k : window.top_k;
    this.windows += 1;
    this.ui.windowCount.textContent = String(this.windows);
    // A silent window is not classified (the model's silence threshold, model.json).
    const shown = window.silent ? "(silence)" : topK.length ? topK[0].label : "";
    if (shown && shown !== this.shownLabel) {
      // Only a change is written, so a screen reader announces the label when it changes.
      this.shownLabel = shown;
      this.ui.currentLabel.textContent = shown;
    }
    const timing = window.compute_time_us !== undefined
      ? ` · queued ${(window.queue_time_us / 1000).toFixed(1)} ms,`
        + ` computed in ${(window.compute_time_us / 1000).toFixed(1)} ms`
      : "";
    const unsure = window.low_confidence ? " · low confidence" : "";
    this.ui.currentWindow.textContent = `Window ${window.index + 1}: ${seconds(window.start_ms)}`
      + ` to ${seconds(window.end_ms)}${unsure}${timing}`;
    renderBars(this.ui.topK, window.silent ? [] : topK, this.labels);
    const scores = window.smoothed_scores && window.smoothed_scores.length
      ? window.smoothed_scores : window.scores;
    this.chart.add(window.end_ms, scores);
  }

  /** An in-band notice: the stream goes on. */
  addNotice(notice) {
    this.ui.notices.append(element("li", { textContent: `${notice.code}: ${notice.message}` }));
  }

  /** The closing summary: the best label over the stream, the counts, every top label. */
  showSummary(summary) {
    if (!summary) return;
    const best = summary.top_k[0];
    const silent = Number(summary.silent_windows || 0);
    const unsure = Number(summary.low_confidence_windows || 0);
    const verdict = element("p", { className: "verdict" });
    if (best) {
      verdict.append("Mostly ", element("strong", { id: "summary-label", textContent: best.label }),
        ` (${percent(best.score)} on average)`);
    } else if (silent > 0) {
      verdict.textContent = "Only silence: nothing to classify.";
    } else {
      verdict.textContent = "Too little audio for a single window.";
    }
    const facts = element("dl");
    const ended = END_REASONS[summary.end_reason] || String(summary.end_reason || "complete").toLowerCase();
    for (const [term, value, id] of [
      ["Windows", String(summary.windows), "summary-windows"],
      ["Audio", `${Number(summary.duration_s).toFixed(1)} s`, "summary-duration"],
      ["Ended", ended, "summary-end"],
      ["Silent windows", String(silent), "summary-silent"],
      ["Low-confidence windows", String(unsure), "summary-unsure"],
    ]) {
      facts.append(element("dt", { textContent: term }), element("dd", { textContent: value, id }));
    }
    const bars = element("ol", { className: "bars" });
    bars.setAttribute("aria-label", "Labels over the whole stream");
    renderBars(bars, summary.top_k, this.labels);
    this.ui.summary.replaceChildren(verdict, facts, bars);
  }
}
