"""The explanation pictures of predict.py --explain: per question one PNG and a self-contained HTML page beside it.

One column per checkpoint (and, for two, a third column: the second minus the first, e.g. distilled student minus
teacher: what distillation changed). Rows:

1. a frame of each clip (its middle frame; only when a video was decoded, not for stored features);
2. the answer distribution: the top answers' probabilities (open-ended), every candidate's probability (multiple
   choice), or the regression output (count);
3. the question-word attention (the first unit's softmax over the question's words);
4. appearance and 5. motion: each graph layer's attention over the clips (model/attention.py
   ``graph_over_clips``: a GAT block's attention rows averaged over heads and query clips, a distribution over the
   clips), one heat-map row per layer and block (independent / joint); the difference column compares the mean
   over layers, as teacher and student have different numbers of layers;
6. the readout's attention over the fused clips (the distribution the answer reads the clips with).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.answering import Answer
from model.attention import GRAPH_BLOCKS
from model.heads import get_head

TOP_K = 8


@dataclass
class Explained:
    """What one picture shows: the question (its tokens and any unknown words), one frame per clip (uint8
    (C, H, W, 3) or None), the ground truth when known, and the answers of the checkpoints (with attention)."""
    title: str
    question: str
    tokens: list[str]
    unknown: list[str]
    frames: np.ndarray | None
    answers: list[Answer]
    truth: str | None = None


def _layer_rows(answer: Answer, stream: int) -> tuple[np.ndarray, list[str]]:
    """(rows (u*g*2, C), labels): the independent and joint block of every graph layer of one stream (0 appearance,
    1 motion) as distributions over clips."""
    over = answer.attention.graph_over_clips()[:, :, 0].numpy()                  # (u*g, 4, C)
    rows, labels = [], []
    for layer in range(over.shape[0]):
        for block in (2 * stream, 2 * stream + 1):
            rows.append(over[layer, block])
            labels.append(f"layer {layer + 1} {GRAPH_BLOCKS[block].split()[1]}")
    return np.stack(rows), labels


def _layer_mean(answer: Answer, stream: int) -> np.ndarray:
    """(C,) the stream's attention over clips averaged over its graph layers and both blocks (sums to 1)."""
    return _layer_rows(answer, stream)[0].mean(axis=0)


def _answer_panel(ax, answer: Answer, top_k: int) -> None:
    if answer.probabilities is None:  # a regression output (count)
        ax.barh([0], [float(answer.scores[0])], color="tab:blue")
        ax.set_yticks([0], ["count output"])
        ax.set_xlabel("regression output (prediction: rounded, clamped to 1..10)")
        ax.set_title(f"{answer.model}: count {answer.prediction}", fontsize=10)
        return
    top = get_head(answer.head).shown_answers(answer, top_k)
    labels = [label for label, _ in top][::-1]
    values = [p for _, p in top][::-1]
    colours = ["tab:orange" if label == answer.prediction else "tab:blue" for label in labels]
    ax.barh(range(len(values)), values, color=colours)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.set_xlim(0, min(1.0, max(0.1, 1.25 * max(values))))
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.3f}", va="center", fontsize=7)
    ax.set_xlabel("probability (orange: the answer)")
    ax.set_title(f"{answer.model}: {answer.prediction!r} ({max(values):.2f})", fontsize=10)


def _answer_difference(ax, first: Answer, second: Answer, top_k: int) -> None:
    if first.probabilities is None:  # a regression output (count)
        ax.barh([0], [float(second.scores[0] - first.scores[0])], color="tab:purple")
        ax.set_yticks([0], ["count output"])
        ax.set_xlabel(f"{second.model} - {first.model}")
        ax.axvline(0, color="black", lw=0.6)
        return
    if not get_head(first.head).uses_candidates:
        index = {label: i for i, label in enumerate(first.labels)}
        shown = list(dict.fromkeys([a for a, _ in first.top(top_k // 2 + 1)] + [a for a, _ in second.top(top_k // 2 + 1)]))
        rows = [index[label] for label in shown]
    else:
        shown, rows = first.labels, list(range(len(first.labels)))
    delta = second.probabilities[rows] - first.probabilities[rows]
    ax.barh(range(len(shown)), delta[::-1], color=["tab:green" if d >= 0 else "tab:red" for d in delta[::-1]])
    ax.set_yticks(range(len(shown)), shown[::-1], fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    limit = max(0.05, float(np.abs(delta).max()) * 1.1)
    ax.set_xlim(-limit, limit)
    ax.set_xlabel(f"probability, {second.model} - {first.model}")
    ax.set_title("answers: what changed", fontsize=10)


def _word_panel(ax, tokens: list[str], weights: np.ndarray, title: str, signed: bool = False) -> None:
    colours = ("tab:green" if w >= 0 else "tab:red" for w in weights) if signed else "tab:blue"
    ax.bar(range(len(tokens)), weights, color=list(colours) if signed else colours)
    ax.set_xticks(range(len(tokens)), tokens, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("difference" if signed else "weight (sums to 1)")
    if signed:
        ax.axhline(0, color="black", lw=0.6)
    else:
        ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)


def _clip_heatmap(fig, ax, rows: np.ndarray, labels: list[str], title: str, signed: bool = False,
                  limits: tuple[float, float] | None = None) -> None:
    """Rows of weights over the C clips; each cell annotated (up to 16 clips). ``limits``: the colour scale (shared
    by the checkpoints' panels of one stream), default the rows' own range; signed: a diverging scale around 0."""
    c = rows.shape[1]
    if signed:
        limit = max(float(np.abs(rows).max()), 1e-9)
        low, high, cmap = -limit, limit, "RdBu_r"
    else:
        low, high = limits or (float(rows.min()), float(rows.max()))
        cmap = "viridis"
    image = ax.imshow(rows, aspect="auto", cmap=cmap, vmin=low, vmax=high if high > low else low + 1e-9)
    if c <= 16:
        for (i, j), value in np.ndenumerate(rows):
            text = f"{value:+.1e}" if signed else f"{value:.3f}"
            if signed:  # dark at both ends of the diverging scale
                dark = abs(value) > 0.6 * high
            else:
                dark = ((value - low) / (high - low) if high > low else 0.5) < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=6 if c > 8 else 7,
                    color="white" if dark else "black")
    ax.set_xticks(range(c), [str(i + 1) for i in range(c)], fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) > 6 else 8)
    ax.set_xlabel("clip")
    ax.set_title(title, fontsize=10)
    colourbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colourbar.ax.tick_params(labelsize=7)


def _readout_panel(ax, weights: np.ndarray, title: str, signed: bool = False) -> None:
    c = len(weights)
    colours = ["tab:green" if w >= 0 else "tab:red" for w in weights] if signed else "tab:blue"
    ax.bar(range(1, c + 1), weights, color=colours)
    ax.set_xticks(range(1, c + 1))
    ax.set_xlabel("clip")
    if signed:
        ax.set_ylabel("difference")
        ax.axhline(0, color="black", lw=0.6)
    else:
        ax.set_ylabel("weight (sums to 1)")
        ax.axhline(1.0 / c, color="grey", lw=0.8, ls="--", label=f"uniform 1/{c}")
        ax.set_ylim(0, min(1.0, 1.3 * float(weights.max())))
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
        if c <= 16:
            for x, value in enumerate(weights, 1):
                ax.text(x, value, f"{value:.3f}", ha="center", va="bottom", fontsize=6 if c > 8 else 7)
    ax.set_title(title, fontsize=10)


def draw(explained: Explained, path: Path, top_k: int = TOP_K) -> None:
    """Write the PNG of one question to ``path`` (layout: module docstring)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = explained.answers
    pair = len(answers) == 2
    columns = len(answers) + (1 if pair else 0)
    c = answers[0].attention.readout.shape[1]
    layers = max(a.attention.graph.shape[0] for a in answers)
    heat = max(1.4, 0.28 * 2 * layers + 0.6)
    heights = [1.6 if explained.frames is not None else 0.01, 2.2, 1.8, heat, heat, 1.6]
    fig = plt.figure(figsize=(5.2 * columns, sum(heights) + 1.6), layout="constrained")
    grid = fig.add_gridspec(len(heights), columns, height_ratios=heights)
    truth = f" | ground truth: {explained.truth}" if explained.truth is not None else ""
    unknown = f" | not in the vocabulary: {', '.join(explained.unknown)}" if explained.unknown else ""
    fig.suptitle(f"{explained.title}\nQ: {explained.question}{truth}{unknown}", fontsize=12)
    if explained.frames is not None:
        strip = fig.add_subplot(grid[0, :])
        strip.imshow(np.concatenate(list(explained.frames), axis=1))
        width = explained.frames.shape[2]
        strip.set_xticks([width * (i + 0.5) for i in range(c)], [f"clip {i + 1}" for i in range(c)], fontsize=8)
        strip.set_yticks([])
        strip.set_title("middle frame of each clip", fontsize=10)
    tokens = explained.tokens
    limits = []  # one colour scale per stream, shared by the checkpoints
    for stream in (0, 1):
        values = np.concatenate([_layer_rows(a, stream)[0].ravel() for a in answers])
        limits.append((float(values.min()), float(values.max())))
    for column, answer in enumerate(answers):
        maps = answer.attention
        _answer_panel(fig.add_subplot(grid[1, column]), answer, top_k)
        _word_panel(fig.add_subplot(grid[2, column]), tokens, maps.question[0, 0, :len(tokens)].numpy(),
                    "question-word attention")
        for stream, name in enumerate(("appearance", "motion")):
            rows, labels = _layer_rows(answer, stream)
            _clip_heatmap(fig, fig.add_subplot(grid[3 + stream, column]), rows, labels,
                          f"{name}: each graph layer's attention over clips", limits=limits[stream])
        _readout_panel(fig.add_subplot(grid[5, column]), maps.readout[0].numpy(), "readout attention over clips")
    if pair:
        first, second = answers
        label = f"{second.model} - {first.model}"
        _answer_difference(fig.add_subplot(grid[1, 2]), first, second, top_k)
        words = (second.attention.question[0, 0, :len(tokens)] - first.attention.question[0, 0, :len(tokens)]).numpy()
        _word_panel(fig.add_subplot(grid[2, 2]), tokens, words, f"question-word attention: {label}", signed=True)
        for stream, name in enumerate(("appearance", "motion")):
            delta = (_layer_mean(second, stream) - _layer_mean(first, stream))[None]
            _clip_heatmap(fig, fig.add_subplot(grid[3 + stream, 2]), delta, ["mean over layers"],
                          f"{name}: {label}", signed=True)
        readout = (second.attention.readout[0] - first.attention.readout[0]).numpy()
        _readout_panel(fig.add_subplot(grid[5, 2]), readout, f"readout attention: {label}", signed=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _word_spans(tokens: list[str], weights: np.ndarray) -> str:
    """The question's words shaded by their attention weight (darker = more)."""
    spans = []
    for token, weight in zip(tokens, weights):
        alpha = min(1.0, float(weight) * 2)
        spans.append(f'<span class="w" style="background: rgba(31,119,180,{alpha:.2f})" '
                     f'title="{weight:.3f}">{html.escape(token)}</span>')
    return " ".join(spans)


def page(explained: Explained, png: Path, top_k: int = TOP_K) -> str:
    """A self-contained HTML page: the PNG embedded (base64), the answers and the attention weights as tables."""
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    legend = ("<p>Question-word attention: the softmax over the question's words (darker = more; hover for the "
              "value). Graph rows: each graph layer's GAT block (independent / joint) as a distribution over the "
              "clips, its attention rows averaged over heads and query clips. Readout: the softmax over the fused "
              "clips that the answer reads. Each row sums to 1.</p>")
    parts = [f"<h1>{html.escape(explained.title)}</h1>",
             f"<p><b>Question:</b> {html.escape(explained.question)}"
             + (f" &nbsp; <b>ground truth:</b> {html.escape(explained.truth)}" if explained.truth else "") + "</p>"]
    if explained.unknown:
        parts.append(f"<p><b>Not in the vocabulary</b> (read as &lt;UNK&gt;): {html.escape(', '.join(explained.unknown))}</p>")
    for answer in explained.answers:
        maps = answer.attention
        parts.append(f"<h2>{html.escape(answer.model)}: {html.escape(answer.prediction)}</h2>")
        if answer.probabilities is None:
            parts.append(f"<p>regression output {float(answer.scores[0]):.3f}</p>")
        else:
            shown = get_head(answer.head).shown_answers(answer, top_k)
            parts.append(_table(["answer", "probability"], [[a, f"{p:.4f}"] for a, p in shown]))
        parts.append("<p>question-word attention: "
                     + _word_spans(explained.tokens, maps.question[0, 0, :len(explained.tokens)].numpy()) + "</p>")
        c = maps.readout.shape[1]
        header = ["weights over clips"] + [f"clip {i + 1}" for i in range(c)]
        rows = []
        for stream, name in enumerate(("appearance", "motion")):
            values, labels = _layer_rows(answer, stream)
            rows += [[f"{name} {label}"] + [f"{v:.3f}" for v in row] for row, label in zip(values, labels)]
        rows.append(["readout"] + [f"{v:.3f}" for v in maps.readout[0].numpy()])
        parts.append(_table(header, rows))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.w{padding:1px 3px;border-radius:3px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(explained.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts[:2])}"
            f"<img alt='explanation' src='data:image/png;base64,{image}'>{legend}{''.join(parts[2:])}</body></html>")


def write_explanation(explained: Explained, directory: Path, stem: str, top_k: int = TOP_K) -> tuple[Path, Path]:
    """``directory/stem.png`` and ``directory/stem.html``; returns both paths."""
    png, page_path = directory / f"{stem}.png", directory / f"{stem}.html"
    draw(explained, png, top_k)
    page_path.write_text(page(explained, png, top_k), encoding="utf-8")
    return png, page_path
