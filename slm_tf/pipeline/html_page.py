"""The HTML page every pipeline report writes beside its report.md (one layout for all tasks)."""
import html
from typing import Callable, Dict, List, Sequence, Tuple

from slm_tf.plotting import HTML_FONT_STACK


def report_page(title: str, heading: str, command: str, verdict: str,
                columns: Sequence[Tuple[str, str]], rows: List[Dict],
                fmt: Callable[[str, object], str], after_table: str = "") -> str:
    """A self-contained HTML page: heading, command, verdict, the stage table, then `after_table`.

    `after_table` is already-escaped HTML (plots, per-task sections); every other argument is
    plain text and escaped here.
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(k, r.get(k)))}</td>"
                                    for k, _ in columns) + "</tr>" for r in rows)
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:{HTML_FONT_STACK}}}</style>"
            f"<h1>{html.escape(heading)}</h1>"
            f"<p>Command: <code>{html.escape(command)}</code></p>"
            f"<p>{html.escape(verdict.replace('**', ''))}</p>"
            f"<table border=1><tr>{head}</tr>{body}</table>{after_table}")


def plots_html(plots: Dict[str, str]) -> str:
    """One heading and image per plot (paths relative to the report)."""
    return "".join(f"<h3>{html.escape(k)}</h3><img src='{html.escape(v)}'>"
                   for k, v in plots.items())
