"""The WordNet lexicon: the wndb reader and path rules on a small database written in the
real file format, the run-time rewriting, the checkpoint command, and (where WordNet 3.0 is
installed) the table built from the real database."""

from __future__ import annotations

import numpy as np
import pytest
from policy_testlib import TINY_STREAMS, random_observation, tiny_config

from mmrobot.core.errors import ConfigError
from mmrobot.policies.lexicon import Lexicon, training_vocabulary
from mmrobot.policies.tokenizers import ByteTokenizer
from mmrobot.policies.wordnet import WordNet, build_lexicon, find_wordnet

# (pos, offset, lemmas, pointers as (symbol, offset, pos)): a colour tree with siblings, a
# container tree, antonym and similar-to adjectives, a multi-word verb.
_SYNSETS = [
    ("n", 100, ["chromatic_color"], [("~", 200, "n"), ("~", 300, "n"), ("~", 400, "n")]),
    ("n", 200, ["blue"], [("@", 100, "n"), ("~", 210, "n")]),
    ("n", 210, ["navy", "navy_blue"], [("@", 200, "n")]),
    ("n", 300, ["green"], [("@", 100, "n")]),
    ("n", 400, ["purple"], [("@", 100, "n")]),
    ("n", 500, ["container"], [("~", 510, "n"), ("~", 520, "n")]),
    ("n", 510, ["bin"], [("@", 500, "n")]),
    ("n", 520, ["box"], [("@", 500, "n")]),
    ("a", 1000, ["small", "little"], [("!", 1100, "a")]),
    ("a", 1100, ["large", "big"], [("!", 1000, "a")]),
    ("a", 1010, ["tiny"], [("&", 1000, "a")]),
    ("a", 1020, ["huge"], [("!", 1000, "a")]),
    ("a", 1200, ["red", "crimson(a)"], []),
    ("v", 2000, ["lift", "raise", "elevate"], []),
    ("v", 2100, ["grab", "take_hold_of"], []),
]
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
VOCAB = {"blue", "green", "bin", "small", "little", "large", "big", "red", "lift", "grab", "the"}


def write_wordnet(root):
    """Data and index files in the wndb(5WN) layout (licence header lines start with two
    spaces), plus an exception list."""
    data = {p: ["  1 This software and database is being provided ..."] for p in _FILES}
    index = {p: ["  1 This software and database is being provided ..."] for p in _FILES}
    senses: dict[tuple[str, str], list[int]] = {}
    for pos, off, lemmas, ptrs in _SYNSETS:
        words = " ".join(f"{w} 0" for w in lemmas)
        pointers = " ".join(f"{s} {o:08d} {p} 0000" for s, o, p in ptrs)
        data[pos].append(
            f"{off:08d} 00 {pos} {len(lemmas):02x} {words} {len(ptrs):03d} {pointers} | a gloss"
        )
        for w in lemmas:
            senses.setdefault((w.split("(")[0].lower(), pos), []).append(off)
    for (lemma, pos), offs in sorted(senses.items()):
        offsets = " ".join(f"{o:08d}" for o in offs)
        index[pos].append(f"{lemma} {pos} {len(offs)} 0 {len(offs)} 0 {offsets}")
    for pos, name in _FILES.items():
        (root / f"data.{name}").write_text("\n".join(data[pos]) + "\n", encoding="latin-1")
        (root / f"index.{name}").write_text("\n".join(index[pos]) + "\n", encoding="latin-1")
    (root / "adj.exc").write_text("bigger big\n", encoding="latin-1")
    return root


@pytest.fixture
def small_wordnet(tmp_path):
    return WordNet(write_wordnet(tmp_path))


def test_build_follows_synonyms_narrower_words_and_one_hyponym_level(small_wordnet):
    table = build_lexicon(VOCAB, small_wordnet)
    assert table["crimson"] == "red"  # same synset
    assert table["navy"] == table["navy_blue"] == "blue"  # a kind of blue
    assert table["raise"] == table["elevate"] == "lift"
    assert table["take_hold_of"] == "grab"
    assert table["tiny"] == "little"  # similar to {small, little}: ties go alphabetically
    assert table["container"] == "bin"  # one level more general
    assert table["bigger"] == "big"  # from adj.exc


def test_build_never_follows_siblings_or_antonyms(small_wordnet):
    table = build_lexicon(VOCAB, small_wordnet)
    assert "purple" not in table  # a sibling of blue and green, not a kind of either
    assert "box" not in table  # a sibling of bin
    assert "huge" not in table  # only an antonym of small
    assert not set(table) & VOCAB
    assert set(table.values()) <= VOCAB


def test_max_cost_limits_the_path(small_wordnet):
    assert "navy" not in build_lexicon(VOCAB, small_wordnet, max_cost=0)
    assert build_lexicon(VOCAB, small_wordnet, max_cost=0)["crimson"] == "red"


def test_missing_wordnet_says_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match="wordnet-base"):
        find_wordnet(tmp_path)


def test_normalize_runs_inflections_case_and_punctuation():
    lex = Lexicon(VOCAB, {"crimson": "red", "take_hold_of": "grab", "raise": "lift"})
    assert lex.normalize("Take hold of the Crimson box!") == "grab the red box"
    assert lex.normalize("raises   the  crimson block") == "lift the red block"
    assert lex.normalize("lifted the smaller bins") == "lift the small bin"
    assert lex.normalize("the mauve thing") == "the mauve thing"  # unknown words stay
    with pytest.raises(ValueError, match="not in the training vocabulary"):
        Lexicon({"red"}, {"crimson": "scarlet"})


def test_training_vocabulary_splits_like_normalize():
    assert training_vocabulary(["Pick up the red cube.", "go left"]) == {
        "pick", "up", "the", "red", "cube", "go", "left",
    }  # fmt: skip


def test_config_refuses_a_lexicon_outside_its_vocabulary():
    with pytest.raises(ConfigError, match="not in language.vocabulary"):
        tiny_config(language={"vocabulary": ["red"], "lexicon": {"crimson": "scarlet"}})


def test_tokenizer_reads_synonyms_as_training_words_only_with_a_lexicon():
    lexed = tiny_config(language={"max_len": 32, "vocabulary": sorted(VOCAB),
                                  "lexicon": {"crimson": "red", "tiny": "little"}})  # fmt: skip
    tok = ByteTokenizer.from_config(lexed.language)
    ids_syn, _ = tok.encode("Tiny crimson cube")
    ids_train, _ = tok.encode("little red cube")
    assert np.array_equal(ids_syn, ids_train)
    plain = ByteTokenizer.from_config(tiny_config(language={"max_len": 32}).language)
    assert plain.lexicon is None
    assert not np.array_equal(plain.encode("Tiny crimson cube")[0], ids_train)


def test_policy_lexicon_command_rewrites_the_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("h5py")
    from mmrobot.cli import main
    from mmrobot.envs.dataset import DatasetWriter, EpisodeRecord
    from mmrobot.policies import FusionPolicyModel, TorchPolicy, load_checkpoint, save_checkpoint

    wn_dir = write_wordnet(tmp_path)
    torch.manual_seed(0)
    ckpt = save_checkpoint(FusionPolicyModel(tiny_config(language={"max_len": 32})), tmp_path / "c")
    rng = np.random.default_rng(0)
    steps = 2
    with DatasetWriter(tmp_path / "d.h5", TINY_STREAMS, -np.ones(7), np.ones(7), 20.0) as w:
        for i, (text, split) in enumerate(
            [("lift the little red bin", "train"), ("grab the big blue bin", "train"),
             ("raise the crimson bin", "heldout")]
        ):  # fmt: skip
            obs = [random_observation(TINY_STREAMS, rng) for _ in range(steps)]
            w.append(
                EpisodeRecord(
                    task="reach", instruction=text, seed=i, success=True, split=split,
                    reason="", actions=np.zeros((steps, 7), np.float32),
                    values={s.name: np.stack([o.values[s.name] for o in obs]) for s in TINY_STREAMS},
                    ages_ns={s.name: np.zeros(steps, np.int64) for s in TINY_STREAMS},
                    valid={s.name: np.ones(steps, bool) for s in TINY_STREAMS},
                    rewards=np.zeros(steps, np.float32), t_ns=np.arange(steps, dtype=np.int64),
                )
            )  # fmt: skip
    args = ["policy", "lexicon", str(ckpt), "--dataset", str(tmp_path / "d.h5")]
    assert main([*args, "--wordnet", str(wn_dir)]) == 0
    assert "1 with held-out phrasings not read" in capsys.readouterr().out
    model = load_checkpoint(ckpt)
    lang = model.config.language
    # the held-out episode's words ("raise", "crimson") are not in the vocabulary
    assert set(lang.vocabulary) == {"lift", "the", "little", "red", "bin", "grab", "big", "blue"}
    assert lang.lexicon["crimson"] == "red" and lang.lexicon["raise"] == "lift"
    policy = TorchPolicy(model)
    obs = random_observation(TINY_STREAMS, rng)
    a = policy.act(obs, "raise the crimson bin").actions
    b = policy.act(obs, "lift the red bin").actions
    np.testing.assert_array_equal(a, b)
    assert main(["policy", "lexicon", str(ckpt), "--dataset", "x", "--remove"]) == 0
    assert load_checkpoint(ckpt).config.language.vocabulary == ()


def test_real_wordnet_maps_unseen_words_by_meaning():
    """WordNet 3.0 as Debian's wordnet-base installs it; the words are a development set
    chosen before the held-out phrasings were looked at."""
    try:
        wn = WordNet()
    except ConfigError:
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base)")
    vocab = {"reach", "move", "go", "push", "slide", "pick", "up", "lift", "grab", "put",
             "place", "stack", "on", "top", "of", "the", "to", "into", "in", "bin", "block",
             "cube", "red", "green", "blue", "yellow", "small", "little", "large", "big",
             "left", "right", "zone", "target"}  # fmt: skip
    table = build_lexicon(vocab, wn)
    expected = {"cerulean": "blue", "sapphire": "blue", "cherry": "red", "jade": "green",
                "amber": "yellow", "enormous": "big", "massive": "big", "petite": "little",
                "seize": "grab", "hoist": "lift", "thrust": "push", "slab": "block"}  # fmt: skip
    assert {w: table.get(w) for w in expected} == expected
    for word in ("down", "hand", "table", "gripper", "please"):
        assert word not in table, word
