"""The one registry shape behind heads, encoders, readers and fusers."""

from __future__ import annotations

import pickle
import threading

import pytest

from prodcat.errors import ConfigError, DataError, ProdcatError
from prodcat.registry import Registry


def test_register_get_and_iterate_in_order():
    r: Registry[int] = Registry("widget")
    assert r.register("b", 2) == 2

    @r.register("a")
    def build_a(size=1):
        return ("a", size)

    assert r.names() == ["b", "a"] and list(r) == ["b", "a"] and len(r) == 2
    assert "a" in r and "c" not in r and ["unhashable"] not in r
    assert r["b"] == 2 and r.get("a") is build_a
    assert r.items() == [("b", 2), ("a", build_a)] and r.values() == [2, build_a]
    assert r.create("a", size=3) == ("a", 3)


def test_unknown_name_lists_the_choices():
    r: Registry[int] = Registry("widget", extra_choices=("auto",))
    r.register("one", 1)
    with pytest.raises(ConfigError, match=r"unknown widget 'two'; choose one of auto, one"):
        r.get("two")
    with pytest.raises(ConfigError, match="unknown widget"):
        r["two"]  # noqa: B018


def test_a_name_is_registered_once():
    r: Registry[int] = Registry("widget")
    r.register("one", 1)
    with pytest.raises(ConfigError, match="widget 'one' is already registered"):
        r.register("one", 2)
    assert r["one"] == 1


def test_create_passes_declared_parameters_and_refuses_others():
    r: Registry = Registry("widget", shared=("seed",))
    r.register("plain", lambda path, size=1: (path, size))
    r.register("seeded", lambda size=1, seed=0: (size, seed))
    r.register("open", lambda **kw: kw)
    assert r.create("plain", "p", size=2, seed=5) == ("p", 2)  # a shared parameter is dropped
    assert r.create("seeded", size=2, seed=5) == (2, 5)
    assert r.create("open", anything=1, seed=2) == {"anything": 1, "seed": 2}
    with pytest.raises(ConfigError, match=r"widget 'plain' does not take colour \(it takes size\)"):
        r.create("plain", "p", colour="red")


def test_heads_take_only_what_they_declare():
    from prodcat.image.heads import IMAGE_HEADS, create_image_head
    from prodcat.text.heads import HEADS, create_head

    with pytest.raises(ConfigError, match="'complement-nb' does not take C"):
        create_head("complement-nb", C=1.0)
    nb = create_head("complement-nb", class_weight="balanced", random_state=0, calibration="none")
    assert type(nb).__name__ == "ComplementNB"
    mlp = create_image_head("mlp", C=2.0, class_weight="balanced", random_state=1, calibration="none")
    assert mlp.alpha == 0.5 and mlp.random_state == 1
    with pytest.raises(ConfigError, match="unknown image head"):
        create_image_head("svm")
    with pytest.raises(ConfigError, match="already registered"):
        HEADS.register("logistic", needs_calibration=False, description="again")(lambda: None)
    assert IMAGE_HEADS["mlp"].needs_calibration


def test_config_and_data_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, ProdcatError)
    assert issubclass(DataError, ValueError) and issubclass(DataError, ProdcatError)


@pytest.mark.parametrize("make", ["image", "text"])
def test_encoders_pickle_without_their_model_and_lock(make):
    if make == "image":
        from prodcat.image.encoders import create_encoder

        encoder, attribute = create_encoder(), "_session"
    else:
        from prodcat.text.encoders import create_text_encoder

        encoder, attribute = create_text_encoder(), "_model"
    setattr(encoder, attribute, object())  # stands for a loaded model
    state = encoder.__getstate__()
    assert state[attribute] is None and "_lock" not in state
    copy = pickle.loads(pickle.dumps(encoder))
    assert getattr(copy, attribute) is None and isinstance(copy._lock, type(threading.Lock()))
    assert copy._load_once(attribute, lambda: "loaded") == "loaded"
    assert copy._load_once(attribute, lambda: "again") == "loaded"


def test_usable_cpus_is_one_function():
    import prodcat.image.encoders
    import prodcat.text.encoders
    from prodcat.system import usable_cpus

    assert prodcat.image.encoders.usable_cpus is usable_cpus is prodcat.text.encoders.usable_cpus
    assert usable_cpus() >= 1
