"""CJK labels render: every plot goes through slm_tf.plotting, which registers a CJK font."""
import os
import warnings

import numpy as np

LABELS = ["转账失败", "信用卡挂失", "汇率查询", "退款"]  # Chinese intent names


def _glyph_warnings(draw):
    from slm_tf.plotting import pyplot
    plt = pyplot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw(plt)
    return [str(w.message) for w in caught if "Glyph" in str(w.message)]


def test_chinese_tick_labels_have_glyphs(tmp_path):
    def draw(plt):
        fig, ax = plt.subplots()
        ax.bar(range(len(LABELS)), [1, 2, 3, 4])
        ax.set_xticks(range(len(LABELS)), LABELS)
        ax.set_title("每类 F1 (per-class F1)")
        fig.savefig(tmp_path / "bar.png")
        plt.close(fig)
    assert _glyph_warnings(draw) == []
    assert os.path.getsize(tmp_path / "bar.png") > 0


def test_confusion_matrix_image_with_chinese_labels():
    from slm_tf.train.tensorboard import confusion_figure_png
    cm = np.array([[5, 1, 0, 0], [0, 4, 2, 0], [1, 0, 6, 0], [0, 0, 0, 3]])
    caught = []

    def draw(plt):
        caught.append(confusion_figure_png(cm, LABELS, "混淆矩阵"))
    assert _glyph_warnings(draw) == []
    assert caught[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_cjk_font_is_the_fallback_for_chinese_and_latin_stays_dejavu():
    from matplotlib import font_manager
    from slm_tf.plotting import pyplot
    plt = pyplot()
    families = plt.rcParams["font.family"]
    assert families[0] == "DejaVu Sans"
    # The font matplotlib resolves for the first CJK family really is a file with Chinese glyphs.
    path = font_manager.findfont(font_manager.FontProperties(family=families[1]),
                                 fallback_to_default=False)
    from fontTools.ttLib import TTCollection, TTFont
    fonts = TTCollection(path).fonts if path.endswith(".ttc") else [TTFont(path)]
    cmap = fonts[0].getBestCmap()
    assert all(ord(ch) in cmap for ch in "".join(LABELS))


def test_html_report_declares_charset_and_cjk_fonts():
    from slm_tf.pipeline.html_page import report_page
    from slm_tf.plotting import HTML_FONT_STACK
    page = report_page("t", "银行 <report>", "cmd --x=1", "**ok**", [("acc", "accuracy")],
                       [{"acc": 0.5}, {"acc": "<b>"}], lambda k, v: str(v))
    assert "<meta charset='utf-8'>" in page and HTML_FONT_STACK in page
    assert "Noto Sans CJK SC" in HTML_FONT_STACK and HTML_FONT_STACK.endswith("sans-serif")
    # every user-supplied string is escaped; the table has one row per stage
    assert "银行 &lt;report&gt;" in page and "&lt;b&gt;" in page and "<b>" not in page
    assert page.count("<tr>") == 3 and "**" not in page
