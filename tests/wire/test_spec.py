"""The task description is read from the chain, which anybody writes: every field is type- and
range-checked, a model is a name (never code), and hostile JSON is refused without crashing the reader."""

from __future__ import annotations

import json
import math

import pytest

from refiner.wire.spec import MAX_TEXT, DescriptionError, TaskDescription

KEY = "ab" * 64


def read(**fields: object) -> TaskDescription:
    return TaskDescription.from_json(json.dumps({"refiner": 1, "requester_public_key": KEY, **fields}))


def test_a_description_round_trips() -> None:
    d = TaskDescription(KEY, model="logistic", epochs=3, batch_size=64, lr=1, max_model_bytes=1 << 30)
    assert TaskDescription.from_json(d.to_json()) == d
    assert read(contribution="gtg-shapley").contribution == "gtg-shapley"


def test_new_tasks_ask_for_trusted_data_and_old_descriptions_keep_leave_one_out() -> None:
    new = TaskDescription(KEY)
    assert new.contribution == "trusted-data"
    assert json.loads(new.to_json())["contribution"] == "trusted-data"
    assert TaskDescription.from_json(new.to_json()) == new
    old = read()  # written before the field existed
    assert old.contribution == "leave-one-out"
    assert "contribution" not in json.loads(old.to_json())  # the same text as before: the same digest


@pytest.mark.parametrize("model", ["os:abort", "sys:exit", "os:getpid", "refiner.fl.models:logistic", "a.b"])
def test_a_model_that_names_code_is_refused(model: str) -> None:
    with pytest.raises(DescriptionError, match=f"model '{model}' names code to import") as info:
        read(model=model)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epochs": 0}, "epochs must be 1 to 100, not 0"),
        ({"epochs": 10**12}, "epochs must be 1 to 100, not 1000000000000"),
        ({"epochs": True}, "epochs must be an integer, not bool True"),
        ({"epochs": 1.5}, "epochs must be an integer, not float 1.5"),
        ({"batch_size": 1}, "batch_size must be 8 to 8192, not 1"),
        ({"batch_size": 10**6}, "batch_size must be 8 to 8192"),
        ({"batch_size": "32"}, "batch_size must be an integer, not str '32'"),
        ({"lr": 0}, r"lr must be a finite number in \(0, 10.0\], not 0"),
        ({"lr": -0.1}, "lr must be a finite number"),
        ({"lr": 11}, "lr must be a finite number"),
        ({"lr": math.inf}, "not inf"),
        ({"lr": math.nan}, "not nan"),
        ({"lr": 10**400}, "lr must be a finite number"),
        ({"lr": False}, "lr must be a number, not bool False"),
        ({"lr": "0.1"}, "lr must be a number, not str"),
        (
            {"max_model_bytes": 1 << 40},
            r"max_model_bytes must be 1 to 1073741824 \(1 GiB\), not 1099511627776",
        ),
        ({"max_model_bytes": 0}, "max_model_bytes must be 1 to"),
        ({"data_format": "x" * 1025}, "data_format is 1025 characters, over 1024"),
        ({"data_format": ["MNIST"]}, "data_format must be a string, not list"),
        ({"model": ""}, "model ''"),
        ({"model": "m" * 65}, "model 'mmm"),
        ({"model": {"name": "small_cnn"}}, "model must be a string, not dict"),
        ({"requester_public_key": 7}, "requester_public_key must be a string, not int 7"),
        ({"requester_public_key": "ab" * 100}, "requester_public_key is 200 characters"),
        ({"contribution": "shapley"}, "unknown contribution measure 'shapley'"),
    ],
)
def test_out_of_range_fields_are_refused_with_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(DescriptionError, match=message) as info:
        read(**fields)
    assert str(info.value).startswith("refused task description: ") and "\n" not in str(info.value)


def test_the_constructor_checks_too() -> None:
    with pytest.raises(DescriptionError, match="epochs must be 1 to 100"):
        TaskDescription(KEY, epochs=101)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 80_000, "80000 characters, more than 16384"),  # json.loads segfaulted on this (C stack)
        ("[" * 16_000, "nests JSON 16000 levels deep"),
        ('{"refiner": 1, "requester_public_key": "' + "a" * MAX_TEXT + '"}', "more than 16384"),
        ("[1]", "missing 'refiner': 1"),
        ('"text"', "missing 'refiner': 1"),
        ('{"refiner": 2}', "missing 'refiner': 1"),
        ("{", "not a Refiner task description"),
        ('{"refiner": 1, "requester_public_key": "ab", "' + "k" * 5000 + '": 1}', "unexpected keyword"),
    ],
)
def test_hostile_json_is_refused(text: str, message: str) -> None:
    with pytest.raises(DescriptionError, match=message) as info:
        TaskDescription.from_json(text)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_requester_key_refuses_a_malformed_key() -> None:
    with pytest.raises(DescriptionError, match="does not belong to requester"):
        TaskDescription("zz" * 64).requester_key("0x" + "11" * 20)
