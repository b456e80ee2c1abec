"""TensorBoard summaries beyond Keras' scalars: hparams, a confusion-matrix image and the
worst misclassified examples as a Markdown table."""
import io
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def confusion_figure_png(cm: np.ndarray, label_names: Sequence[str], title: str) -> bytes:
    """A row-normalized confusion-matrix heat map as PNG bytes."""
    from slm_tf.plotting import pyplot
    plt = pyplot()
    cm = np.asarray(cm, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(label_names)
    size = min(4 + 0.12 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        ax.set_xticks(range(n), label_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), label_names, fontsize=7)
    return _figure_png(fig)


def worst_examples_markdown(texts: Sequence[str], y_true: np.ndarray, logits: np.ndarray,
                            label_names: Sequence[str], k: int = 20) -> str:
    """The ``k`` misclassified examples the model was most confident about."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    wrong = np.where(pred != y_true)[0]
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:k]
    rows = ["| text | true | predicted | confidence |", "|---|---|---|---|"]
    for i in wrong:
        text = texts[i].replace("|", "\\|").replace("\n", " ")[:200]
        rows.append(f"| {text} | {label_names[y_true[i]]} | {label_names[pred[i]]} | "
                    f"{probs[i, pred[i]]:.3f} |")
    return "\n".join(rows)


def write_evaluation(log_dir: str, step: int, split: str, report: Dict, texts: List[str],
                     y_true: np.ndarray, logits: np.ndarray, label_names: Sequence[str]) -> None:
    """Scalars, the confusion-matrix image and the worst-examples table of one evaluation."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=step):
        for key in ("accuracy", "macro_f1", "ece"):
            tf.summary.scalar(f"{split}/{key}", report[key])
        png = confusion_figure_png(np.array(report["confusion_matrix"]), label_names,
                                   f"{split} confusion matrix")
        tf.summary.image(f"{split}/confusion_matrix", tf.image.decode_png(png)[tf.newaxis])
        tf.summary.text(f"{split}/worst_misclassified",
                        worst_examples_markdown(texts, y_true, logits, label_names))
    writer.flush()


def write_hparams(log_dir: str, hparams: Dict, metrics: Dict[str, float]) -> None:
    """One hparams-plugin session: the run's flags against its final metrics."""
    clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
             for k, v in hparams.items()}
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        hp.hparams(clean)
        for key, value in metrics.items():
            tf.summary.scalar(key, value)
    writer.flush()
