"""matplotlib set up once for every plot: a headless backend and fonts that cover CJK text.

matplotlib's default DejaVu Sans has no Chinese, Japanese or Korean glyphs (labels turn into empty
boxes with a "Glyph ... missing" warning), and the machines we run on often have no CJK font at
all. The ``noto-cjk-sans-otc`` dependency ships Noto Sans CJK (SIL Open Font License 1.1);
it is registered with matplotlib's font manager and listed after DejaVu Sans, so Latin text
looks as before and matplotlib falls back per glyph to the first font that has it.
"""
import logging as pylogging

# The fallback chain after DejaVu Sans: the shipped Noto Sans CJK (its Simplified Chinese face
# first, then the other regions'), then CJK fonts a system may have instead.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK TC",
                "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "Droid Sans Fallback")
# The same chain for the HTML report (the reader's browser picks the first it has).
HTML_FONT_STACK = ("system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', 'Noto Sans', "
                   + ", ".join(f"'{f}'" for f in CJK_FAMILIES) + ", sans-serif")
_configured = False


def _register_noto_cjk(font_manager) -> bool:
    try:
        import noto_cjk_sans_otc
    except ImportError:  # a system CJK font may still be in CJK_FAMILIES
        pylogging.getLogger(__name__).warning(
            "noto-cjk-sans-otc is not installed: Chinese/Japanese/Korean plot labels need a CJK "
            "font (pip install noto-cjk-sans-otc)")
        return False
    font_manager.fontManager.addfont(str(noto_cjk_sans_otc.FONT_PATH))
    return True


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with the CJK fallback fonts registered."""
    global _configured
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not _configured:
        from matplotlib import font_manager
        _register_noto_cjk(font_manager)
        # Per-glyph fallback only walks the explicit font.family list (not the families behind
        # "sans-serif"), and naming a family that is absent logs a findfont warning per text.
        present = {f.name for f in font_manager.fontManager.ttflist}
        cjk = [f for f in CJK_FAMILIES if f in present]
        plt.rcParams["font.family"] = ["DejaVu Sans", *cjk]
        rest = [f for f in plt.rcParams["font.sans-serif"] if f != "DejaVu Sans"]
        plt.rcParams["font.sans-serif"] = ["DejaVu Sans", *cjk, *rest]
        _configured = True
    return plt
