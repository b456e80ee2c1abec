"""The automatic recipe: a profile of synthetic data with known properties picks the documented
choices, and whatever the user sets wins."""
import json
import os

import pytest
from absl import flags

from conftest import run_script, write_csv
from slm_tf.autorecipe import DATA_DEPENDENT, apply, choose, resolve
from slm_tf.cli import command_line_flag_names
from slm_tf.data.profile import DataProfile, profile_examples


def _english(n_words, count, label):
    return [(" ".join(["word"] * n_words), label)] * count


def test_profile_counts_lengths_script_imbalance_and_duplicates():
    rows = (_english(10, 100, "a") + _english(30, 20, "b") +
            [("银行卡丢了怎么办", "c")] * 4 + [("hi", "c")])
    p = profile_examples([t for t, _ in rows], [l for _, l in rows])
    assert p.num_examples == 125 and p.num_classes == 3
    assert p.class_counts == {"a": 100, "b": 20, "c": 5}
    assert p.imbalance_ratio == 20.0
    assert p.words_p50 == 10 and p.words_max == 30
    # 8 CJK ideographs x 4 rows among all non-space characters (4 per "word", 2 for "hi").
    visible = 100 * 10 * 4 + 20 * 30 * 4 + 4 * 8 + 2
    assert p.cjk_share == pytest.approx(32 / visible)
    assert p.duplicate_texts == 99 + 19 + 3  # every repeat after a text's first row
    assert p.near_empty_texts == 1  # "hi" (the Chinese rows are 8 one-character words)


def test_choices_follow_the_profile():
    short = profile_examples(*zip(*(_english(10, 30, "a") + _english(12, 30, "b"))))
    c = choose(short)
    # Median 11 words -> 11 * 1.2 + 2 = 15.2 word pieces, under 32: the CNN.
    assert c["tokenizer"].value == "wordpiece" and c["model"].value == "cnn"
    # 99th percentile 12 words -> 12 * 1.2 + 2 = 16.4 pieces -> 24 (a multiple of 8).
    assert c["max_seq_len"].value == 24 and c["bucket_by_length"].value is False
    assert c["embedding_dim"].value == 128 and c["batch_size"].value == 32  # small data
    assert c["epochs"].value == 40 and c["class_weights"].value == "none"
    assert "bigram_buckets" not in c and "pooling" not in c and "token_dropout" not in c
    chinese = profile_examples(["我的银行卡丢了"] * 50 + ["转账失败了吗"] * 2,
                               ["lost"] * 50 + ["transfer"] * 2)
    c = choose(chinese)
    assert c["tokenizer"].value == "char" and "CJK" in c["tokenizer"].reason
    assert c["max_seq_len"].value == 16  # 7 characters + 2 specials, at least 16
    assert c["class_weights"].value == "balanced"  # 25x imbalance
    assert c["model"].value == "cnn"  # 9 characters


def test_long_english_texts_get_tfidf_of_character_ngrams_over_whole_texts():
    # Median (400 + 350) / 2 = 375 words -> 452 pieces, beyond the CNN's 384: TF-IDF of
    # character n-grams within words, over character tokens with a [SPACE] between words.
    long = profile_examples(*zip(*(_english(400, 30, "a") + _english(350, 30, "b"))))
    c = choose(long)
    assert c["model"].value == "tfidf" and c["tokenizer"].value == "char"
    assert c["word_boundaries"].value is True
    assert c["vocab_size"].value == 4 + 10  # the characters of "word", seen twice or more
    # 99th percentile: 400 words of 4 characters + 400 word gaps + 2 specials = 2002 -> 2008.
    assert c["max_seq_len"].value == 2008
    assert c["tfidf_buckets"].value == 65536 and c["ngram_orders"].value == ["2", "3", "4", "5"]
    assert c["dropout"].value == 0.0 and c["weight_decay"].value == 0.0
    assert "kernel_sizes" not in c and "bigram_buckets" not in c and "pooling" not in c
    # A size budget: per counter 2 int8 weights and a float32 IDF value within 95% of the
    # file, in multiples of 1024: (190,000 - 2 intercepts) // 6 = 31,666 -> 30,720.
    assert choose(long, max_bytes=200_000)["tfidf_buckets"].value == 30_720
    # Scenes of 4000 words: 16,000 characters + 4,000 gaps + 2 -> capped at 16,384. A model the
    # user names keeps word pieces and its own window (the CNN 384, the bag 4096).
    very_long = profile_examples(["word " * 4000] * 10 + ["word " * 3900] * 10,
                                 ["a"] * 10 + ["b"] * 10)
    assert choose(very_long)["max_seq_len"].value == 16384
    for model, window in (("cnn", 384), ("bow", 4096)):
        c = choose(very_long, user_model=model)
        assert c["max_seq_len"].value == window and c["tokenizer"].value == "wordpiece"
        assert c["word_boundaries"].value is False
    # tfidf named by the user on short texts: character tokens with word edges as well.
    short = profile_examples(*zip(*(_english(10, 30, "a") + _english(12, 30, "b"))))
    c = choose(short, user_model="tfidf")
    assert c["model"].value == "cnn" and c["tokenizer"].value == "char"
    assert c["word_boundaries"].value is True
    assert c["max_seq_len"].value == 64  # 12 x 4 + 12 + 2 = 62 -> 64
    # Chinese reviews of 60 characters (62 tokens with the specials): a bag over characters.
    zh = profile_examples(["好" * 60, "差" * 60] * 20, ["pos", "neg"] * 20)
    c = choose(zh)
    assert c["tokenizer"].value == "char" and c["model"].value == "bow"
    # No size budget (train.py): bigram and trigram tables of their own, strong weight decay.
    assert (c["bigram_buckets"].value, c["trigram_buckets"].value) == (100_000, 200_000)
    assert c["weight_decay"].value == 1.0
    # The pipeline's student (a budget): narrower rows, both tables, the same decay; the
    # sizes by hand are in test_a_size_budget_sizes_the_automatic_student_for_its_int8_file.
    c = choose(zh, max_bytes=1_000_000)
    rows = c["vocab_size"].value + c["bigram_buckets"].value + c["trigram_buckets"].value
    assert c["weight_decay"].value == 1.0 and rows * c["embedding_dim"].value <= 950_000
    assert c["trigram_buckets"].value > c["bigram_buckets"].value > 0
    # English abstracts of 200 words (242 pieces) fit the CNN's window: the CNN.
    abstracts = profile_examples(*zip(*(_english(200, 30, "a") + _english(180, 30, "b"))))
    c = choose(abstracts)
    assert c["model"].value == "cnn" and c["max_seq_len"].value == 248


def test_few_english_documents_get_the_frozen_pretrained_encoder():
    # 300 abstracts of 200/180 words: median 190 * 1.2 + 2 = 230 pieces (>= 64), 300 < 5000.
    docs = profile_examples(*zip(*(_english(200, 150, "a") + _english(180, 150, "b"))))
    c = choose(docs, pretrained=True)
    assert c["model"].value == "bert" and c["frozen_encoder"].value is True
    assert c["init_checkpoint"].value.startswith("pip:") and c["pooling"].value == "mean_unit"
    # 99th percentile 200 words -> 242 pieces -> 248, under MiniLM's 256...
    assert c["max_seq_len"].value == 248
    # ...and longer texts are cut at 256 (not the CNN's 384).
    longer = profile_examples(*zip(*(_english(300, 20, "a") + _english(290, 20, "b"))))
    assert choose(longer, pretrained=True)["max_seq_len"].value == 256
    # The choices land on the configs that own them and pass the fine-tuning check.
    from slm_tf.data.config import DataConfig
    from slm_tf.models import ModelConfig
    from slm_tf.peft.config import FineTuneConfig, check
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.trainer import TrainConfig
    configs = [DataConfig(), TokenizerConfig(), ModelConfig(), TrainConfig(), FineTuneConfig()]
    apply(configs, c)
    data, _, model, train, finetune = configs
    assert (model.model, finetune.frozen_encoder, data.max_seq_len) == ("bert", True, 248)
    assert train.learning_rate == 1e-2 and train.weight_decay == 0.0
    check(finetune, model.model)
    # Not installed (or the pipeline's students), Chinese, short queries or plenty of data:
    # no pretrained encoder.
    assert choose(docs)["model"].value == "cnn"
    zh = profile_examples(["好" * 80, "差" * 80] * 20, ["pos", "neg"] * 20)
    assert choose(zh, pretrained=True)["model"].value == "bow"
    short = profile_examples(*zip(*(_english(10, 30, "a") + _english(12, 30, "b"))))
    assert choose(short, pretrained=True)["model"].value == "cnn"
    many = profile_examples(*zip(*(_english(200, 2600, "a") + _english(180, 2600, "b"))))
    assert choose(many, pretrained=True)["model"].value == "cnn"


def _profile(examples, classes, words_p50, distinct_words):
    return DataProfile(examples, classes, {f"c{i}": examples // classes for i in range(classes)},
                       1.0, 0.0, words_p50, 2 * words_p50, 3 * words_p50, 4 * words_p50,
                       5 * words_p50, 10 * words_p50, 15 * words_p50, distinct_words, 60, 0, 0)


def test_a_size_budget_sizes_the_automatic_student_for_its_int8_file():
    """With --student_max_bytes the vocabulary and widths shrink until the weights (one byte
    each in int8) fit 95% of the budget; Keras' own parameter count is the oracle."""
    from slm_tf.models import ModelConfig, build_model
    # Medical-abstract-like: 2,000 documents of 200 words, 5 classes, 20,000 distinct words.
    docs = _profile(2000, 5, 200, 20_000)
    free = choose(docs)
    assert free["vocab_size"].value == 16000 and free["embedding_dim"].value == 128
    c = choose(docs, max_bytes=1_000_000)
    # By hand: convolutions 128 x 128 x (2+3+4+5) + 4 x 128 biases = 229,888, head 512 x 5 + 5
    # = 2,565; (950,000 - 232,453) // 128 = 5,605 rows -> 5,000 (whole thousands).
    assert (c["embedding_dim"].value, c["num_filters"].value) == (128, 128)
    assert c["vocab_size"].value == 5000 and "fits" in c["vocab_size"].reason
    cfg = ModelConfig(model="cnn", embedding_dim=128, num_filters=128, hidden_dim=0,
                      kernel_sizes=["2", "3", "4", "5"])
    params = build_model(cfg, 5000, 5, 64).count_params()
    assert params == 5000 * 128 + 232_453 and params <= 950_000
    assert build_model(cfg, 6000, 5, 64).count_params() > 950_000  # one more thousand would not
    # banking77-like (10,000 queries, 77 classes): the big-data widths (256 x 200) cannot hold
    # 4,000 rows (convolutions alone 716,800 + head 61,677), so the next widths are taken.
    queries = _profile(10_000, 77, 11, 2_500)
    assert choose(queries)["embedding_dim"].value == 256
    c = choose(queries, max_bytes=1_000_000)
    assert (c["embedding_dim"].value, c["num_filters"].value) == (128, 128)
    assert c["vocab_size"].value == 4000 and "narrower" in c["embedding_dim"].reason
    # A tight budget: 300,000 bytes -> 285,000 for weights; 128 x 128 leaves
    # (285,000 - 269,389) // 128 = 121 rows, 64 x 64 leaves (285,000 - 77,389) // 64 = 3,243.
    c = choose(queries, max_bytes=300_000)
    assert (c["embedding_dim"].value, c["vocab_size"].value) == (64, 3000)
    # A budget no CNN fits: the smallest model (1,000 rows x 64) is chosen and the reason says
    # it does not fit: 64,000 + 77,389 = 141,389 weights against 95,000.
    c = choose(queries, max_bytes=100_000)
    assert (c["embedding_dim"].value, c["vocab_size"].value) == (64, 1000)
    assert "141,389" in c["vocab_size"].reason and "raise --student_max_bytes" in \
        c["vocab_size"].reason
    # Long documents' tfidf counters shrink under a budget: per counter one int8 weight per
    # class and a float32 IDF value. 3 classes: 65,536 counters fit 1 MB. 20 classes: 24 bytes
    # per counter, (950,000 - 20) // 24 = 39,582 -> 38,912 (multiples of 1024);
    # tests/test_tfidf.py converts such a model and weighs the file.
    scenes = _profile(400, 3, 1200, 2_500)
    assert choose(scenes, max_bytes=1_000_000)["tfidf_buckets"].value == 65536
    c = choose(_profile(400, 20, 1200, 2_500), max_bytes=1_000_000)
    assert c["model"].value == "tfidf" and c["tfidf_buckets"].value == 38_912
    # Below the smallest table (4,096 x 7 + 3 = 28,675 bytes) the reason names the flag.
    c = choose(scenes, max_bytes=10_000)
    assert c["tfidf_buckets"].value == 4096 and "28,675" in c["tfidf_buckets"].reason
    assert "raise --student_max_bytes" in c["tfidf_buckets"].reason
    # A character bag within a budget: 8-wide rows, the rest split 50 : 64 between bigram and
    # trigram tables. By hand for 500 kB: vocabulary 2 characters + 10 specials = 12 rows,
    # head 8 x 2 + 2 = 18, (475,000 - 18) // 8 = 59,372 rows -> 59,360 hashed ->
    # 26,035 bigram (59,360 x 50 / 114 = 26,035.1) and 33,325 trigram rows.
    zh = profile_examples(["好" * 60, "差" * 60] * 20, ["pos", "neg"] * 20)
    c = choose(zh, max_bytes=500_000)
    assert c["tokenizer"].value == "char" and c["model"].value == "bow"
    assert (c["embedding_dim"].value, c["vocab_size"].value) == (8, 12)
    assert (c["bigram_buckets"].value, c["trigram_buckets"].value) == (26_035, 33_325)
    assert c["weight_decay"].value == 1.0
    cfg = ModelConfig(model="bow", embedding_dim=8, bigram_buckets=26_035,
                      trigram_buckets=33_325, hidden_dim=0, pooling="sqrt_n")
    params = build_model(cfg, 12, 2, 64).count_params()
    assert params == 59_372 * 8 + 18 and params <= 475_000
    assert "trigram_buckets" not in choose(scenes, max_bytes=500_000)  # words: bigrams only
    assert "what fits" in c["bigram_buckets"].reason
    # A budget the smallest tables (16,000 hashed rows) cannot meet says so and names the flag:
    # (16,000 + 12) x 8 + 18 = 128,114 weights against 95,000.
    c = choose(zh, max_bytes=100_000)
    assert "128,114" in c["bigram_buckets"].reason and "raise --student_max_bytes" in \
        c["bigram_buckets"].reason


def test_bucket_by_length_when_padding_dwarfs_the_median():
    # 95 texts of 10 words, 5 of 100: median 14 pieces, 99th percentile 122 -> 128 >= 4 x 14
    # (and >= 128, below which padding costs little).
    skewed = profile_examples(*zip(*(_english(10, 95, "a") + _english(100, 5, "b"))))
    c = choose(skewed)
    assert c["model"].value == "cnn" and c["max_seq_len"].value == 128
    assert c["bucket_by_length"].value is True
    even = profile_examples(*zip(*(_english(10, 50, "a") + _english(11, 50, "b"))))
    assert choose(even)["bucket_by_length"].value is False
    # banking77-like: median 14 pieces padded to 64 (> 4x, but under 128): not worth it.
    short_skew = profile_examples(*zip(*(_english(10, 95, "a") + _english(50, 5, "b"))))
    c = choose(short_skew)
    assert c["max_seq_len"].value == 64 and c["bucket_by_length"].value is False


def test_user_settings_win():
    choices = choose(profile_examples(*zip(*(_english(12, 40, "a") + _english(3, 40, "b")))))
    # Nothing set: everything applies.
    assert set(resolve(choices, set(), set())) == set(choices)
    # A recipe (flagfile) naming a model, applied to other data (--data on the command line),
    # keeps its model and training choices, but the data-dependent ones come from the profile...
    applied = resolve(choices, {"data", "model", "max_seq_len", "dropout"}, {"data"})
    assert set(applied) == set(DATA_DEPENDENT)
    # ...unless given on the command line...
    applied = resolve(choices, {"data", "model", "max_seq_len"}, {"data", "max_seq_len"})
    assert "max_seq_len" not in applied and "tokenizer" in applied
    # ...and a recipe on the data it names itself keeps its tuned values.
    applied = resolve(choices, {"data", "model", "max_seq_len"}, set())
    assert "max_seq_len" not in applied and "tokenizer" in applied
    # No model named: each training choice applies unless set anywhere.
    applied = resolve(choices, {"epochs"}, set())
    assert "epochs" not in applied and "dropout" in applied and "model" in applied


def test_command_line_flag_names_sees_only_literal_flags():
    fv = flags.FlagValues()
    flags.DEFINE_integer("max_seq_len", 64, "", flag_values=fv)
    flags.DEFINE_bool("deterministic", True, "", flag_values=fv)
    flags.DEFINE_string("data", "", "", flag_values=fv)
    argv = ["train.py", "--flagfile=recipe.flags", "--max_seq_len=32", "--nodeterministic",
            "--data", "x.csv", "--unknown=1"]
    assert command_line_flag_names(argv, fv) == {"max_seq_len", "deterministic", "data"}


@pytest.mark.integration
def test_train_script_applies_the_profile_under_a_recipe(tmp_path, data_dir):
    rows = [(" ".join(["card"] * 40 + [f"w{i % 7}"]), "card") for i in range(60)] + \
           [(" ".join(["loan"] * 40 + [f"w{i % 7}"]), "loan") for i in range(60)]
    data = write_csv(tmp_path / "long.csv", rows)
    recipe = tmp_path / "recipe.flags"
    recipe.write_text("--model=bow\n--embedding_dim=8\n--hidden_dim=8\n--max_seq_len=16\n"
                      "--epochs=1\n--dropout=0.2\n", encoding="utf-8")
    out = tmp_path / "run"
    run_script("train", f"--flagfile={recipe}", f"--data={data}", f"--data_dir={data_dir}",
               f"--output_dir={out}", "--vocab_size=100")
    cfg = json.load(open(out / "config.json"))
    # 41 words -> 41 * 1.2 + 2 = 51.2 -> 56: the recipe's 16 would cut every text.
    assert cfg["data"]["max_seq_len"] == 56
    assert cfg["tokenizer"]["vocab_size"] == 100  # command line wins
    assert cfg["model"]["model"] == "bow" and cfg["model"]["dropout"] == 0.2  # recipe kept
    profile = json.load(open(os.path.join(out, "data_profile.json")))
    assert profile["choices"]["max_seq_len"]["applied"] is True
    assert profile["choices"]["vocab_size"]["applied"] is False
    assert profile["choices"]["model"]["applied"] is False
    assert 80 < profile["profile"]["num_examples"] < 120  # the training split only


def test_pipeline_student_recipe_is_automatic_without_recipe_flags(tmp_path):
    """pipeline.py --data=X with no --student_recipe: the student (plain and distilled) gets
    the automatic recipe; a data flag on the command line wins; a named recipe keeps its model
    but takes the data-dependent choices from the data it is applied to."""
    from slm_tf.pipeline.config import PipelineConfig
    from slm_tf.pipeline.stages import Context
    texts = ["银行卡丢了怎么办", "我的转账还没有到账", "汇率是多少", "怎么修改密码"]
    rows = [(texts[i % 4] + "请帮我" * (i % 3), f"l{i % 4}") for i in range(80)]
    data = write_csv(tmp_path / "zh.csv", rows)
    out = str(tmp_path / "pipe")
    overrides = [f"--data={data}", f"--data_dir={tmp_path / 'tfds'}"]
    ctx = Context(PipelineConfig(output_dir=out), overrides, auto_student=True,
                  data_on_command_line={"data"})
    (d, tok, model, train), profile = ctx.student(os.path.join(out, "student"))
    assert tok.tokenizer == "char"  # all ideographs: one token per character
    assert model.model == "cnn" and model.embedding_dim == 128  # < 5,000 training rows
    assert model.dropout == 0.5 and d.batch_size == 32
    assert profile["choices"]["model"]["applied"] and d.max_seq_len >= 16
    # The automatic student is not pruned (its dense int8 file is sized for the budget)...
    assert ctx.cfg.prune == 0 and profile["pipeline_choices"]["prune"]["applied"]
    assert PipelineConfig().prune > 0  # ...though a recipe's student is by default
    # ...unless the user asks for pruning.
    asked = Context(PipelineConfig(output_dir=out, prune=0.5), overrides, auto_student=True,
                    data_on_command_line={"data"}, pipeline_given={"prune"})
    assert asked.cfg.prune == 0.5
    assert not asked.student(os.path.join(out, "student"))[1]["pipeline_choices"]["prune"][
        "applied"]
    # The report lists every choice with its reason, and which ones the user overrode.
    from slm_tf.autorecipe import PROFILE_FILE
    from slm_tf.io_utils import write_json
    from slm_tf.pipeline.report import automatic_choices_section
    os.makedirs(os.path.join(out, "student"), exist_ok=True)
    write_json(os.path.join(out, "student", PROFILE_FILE), profile)
    md = "\n".join(automatic_choices_section({"student": os.path.join(out, "student"),
                                                "teacher": str(tmp_path / "absent")}))
    # 80 rows, less the default validation fifth: 64 training texts.
    assert "64 texts, 4 classes" in md and "### teacher" not in md
    assert "| --tokenizer | char | yes |" in md and "| --prune | 0.0 | yes |" in md
    assert "| --kernel_sizes | 2,3,4,5 | yes |" in md
    # A data flag given on the pipeline's command line wins over the automatic choice.
    ctx = Context(PipelineConfig(output_dir=out), [*overrides, "--max_seq_len=40"],
                  auto_student=True, data_on_command_line={"data", "max_seq_len"})
    (d, tok, _, _), profile = ctx.student(os.path.join(out, "student"))
    assert d.max_seq_len == 40 and not profile["choices"]["max_seq_len"]["applied"]
    assert "| --max_seq_len | " in "\n".join(automatic_choices_section(
        {"student": os.path.join(out, "student")}))
    # A recipe that names its model keeps it (and its sizes); the tokenizer follows the data.
    recipe = tmp_path / "student.flags"
    recipe.write_text("--data=banking77\n--model=bow\n--embedding_dim=24\n--tokenizer=wordpiece\n"
                      "--seed=5\n")
    ctx = Context(PipelineConfig(output_dir=out, student_recipe=str(recipe)), overrides,
                  auto_student=False, data_on_command_line={"data"})
    (d, tok, model, train), _ = ctx.student(os.path.join(out, "student"))
    assert model.model == "bow" and model.embedding_dim == 24 and tok.tokenizer == "char"
    assert d.data == data and train.seed == 5  # the recipe's own seed
    # pipeline.py --seed=9 reseeds every stage: the student and the teacher (whose recipe,
    # banking77_teacher.flags, says --seed=42).
    ctx = Context(PipelineConfig(output_dir=out, student_recipe=str(recipe), seed=9),
                  overrides, data_on_command_line={"data"}, pipeline_given={"seed"})
    assert ctx.student(os.path.join(out, "student"))[0][3].seed == 9
    assert ctx.teacher(os.path.join(out, "teacher"))[0][3].seed == 9


def test_pipeline_teacher_follows_the_data_without_a_teacher_recipe(tmp_path):
    """No --teacher_recipe: few English documents get train.py's frozen pretrained encoder;
    short queries get the default recipe with the sequence length of the data; a named
    teacher recipe is used as it is."""
    from slm_tf.pipeline.config import PipelineConfig
    from slm_tf.pipeline.stages import Context
    out = str(tmp_path / "pipe")
    words = ["heart", "valve", "tumour", "nerve", "liver", "graft", "dose", "trial"]
    # 60 documents of 80 words: median 80 * 1.2 + 2 = 98 pieces (>= 64), 60 < 5,000 texts.
    docs = [(" ".join(words[(i + j) % 8] for j in range(80)), f"c{i % 3}") for i in range(60)]
    data = write_csv(tmp_path / "docs.csv", docs)
    overrides = [f"--data={data}", f"--data_dir={tmp_path / 'tfds'}"]
    ctx = Context(PipelineConfig(output_dir=out), overrides, auto_teacher=True,
                  data_on_command_line={"data"})
    (d, _, model, train, _, finetune), profile = ctx.teacher(os.path.join(out, "teacher"))
    assert model.model == "bert" and finetune.frozen_encoder and model.pooling == "mean_unit"
    assert model.init_checkpoint.startswith("pip:") and train.learning_rate == 1e-2
    assert d.max_seq_len == 104 and d.data == data  # 80 words -> 98 pieces -> 104
    assert profile["choices"]["frozen_encoder"]["applied"]
    # Short queries: the default recipe (MiniLM fine-tuned, not frozen), its length from the
    # data: 6 words -> 6 * 1.2 + 2 = 9.2 pieces -> 16 (the recipe's 48 would be mostly padding).
    short = write_csv(tmp_path / "short.csv", [(" ".join(words[i % 8:i % 8 + 6]), f"c{i % 3}")
                                               for i in range(60)])
    overrides = [f"--data={short}", f"--data_dir={tmp_path / 'tfds'}"]
    ctx = Context(PipelineConfig(output_dir=out), overrides, auto_teacher=True,
                  data_on_command_line={"data"})
    (d, _, model, train, _, finetune), _ = ctx.teacher(os.path.join(out, "teacher"))
    assert model.model == "bert" and not finetune.frozen_encoder
    assert train.learning_rate == 1e-4 and train.epochs == 7  # banking77_teacher.flags
    assert d.max_seq_len == 16
    # A named teacher recipe (auto_teacher off) is used as it is.
    ctx = Context(PipelineConfig(output_dir=out), overrides, data_on_command_line={"data"})
    (d, _, model, _, _, _), profile = ctx.teacher(os.path.join(out, "teacher"))
    assert d.max_seq_len == 48 and profile is None
    # Chinese reviews (40 characters each, median >= 32) and long English documents (600
    # words: past the CNN's 384 pieces): the teacher is train.py's own unbudgeted bag of
    # n-grams - not MiniLM, whose vocabulary is English and which would read 256 pieces - and
    # it is larger than the pipeline's 1 MB student.
    han = [chr(0x4E00 + k) for k in range(200)]
    reviews = [("".join(han[(i * 7 + j * 3) % 200] for j in range(40)), f"c{i % 2}")
               for i in range(60)]
    novels = [(" ".join(words[(i + j * j) % 8] for j in range(600)), f"c{i % 3}")
              for i in range(30)]
    for name, rows, model_name in (("reviews", reviews, "bow"), ("novels", novels, "tfidf")):
        overrides = [f"--data={write_csv(tmp_path / f'{name}.csv', rows)}",
                     f"--data_dir={tmp_path / 'tfds'}"]
        ctx = Context(PipelineConfig(output_dir=out), overrides, auto_teacher=True,
                      auto_student=True, data_on_command_line={"data"})
        (d, tok, model, train, _, finetune), profile = ctx.teacher(os.path.join(out, name))
        assert model.model == model_name and tok.tokenizer == "char", name
        assert not model.init_checkpoint and not finetune.frozen_encoder
        assert profile["choices"]["model"]["applied"]
        # As train.py --data=X would train it (its own parse and automatic recipe).
        from slm_tf.autorecipe import configure, pretrained_available
        from slm_tf.config import parse_recipe
        from slm_tf.pipeline.stages import TRAIN_CLASSES
        own, given = parse_recipe(TRAIN_CLASSES, "", [*overrides, f"--output_dir={out}"])
        configure(own, own[0], given - {"output_dir"}, {"data"},
                  pretrained=pretrained_available())
        assert (model, tok.tokenizer, d.max_seq_len) == (own[2], own[1].tokenizer,
                                                         own[0].max_seq_len)
        (_, _, student, _), _ = ctx.student(os.path.join(out, name + "_student"))
        teacher_rows = model.bigram_buckets + model.trigram_buckets + model.tfidf_buckets
        student_rows = student.bigram_buckets + student.trigram_buckets + student.tfidf_buckets
        # Character bags without a budget take larger hashed tables (train.py's choice); the
        # tfidf student's 65,536 counters already fit 1 MB.
        assert teacher_rows > student_rows if model_name == "bow" else \
            teacher_rows == student_rows, (name, teacher_rows, student_rows)
