import pytest

from refiner.fl.measures import MEASURE_NAMES, MEASURES, GtgShapley, LeaveOneOut, TrustedData, measure_for
from refiner.fl.training import TrainingConfig
from refiner.wire.spec import CONTRIBUTIONS


def test_every_name_a_description_may_use_has_a_measure() -> None:
    assert set(MEASURES) == set(MEASURE_NAMES) == set(CONTRIBUTIONS)
    kinds = {name: type(measure_for(name)) for name in MEASURE_NAMES}
    assert kinds == {"leave-one-out": LeaveOneOut, "gtg-shapley": GtgShapley, "trusted-data": TrustedData}


def test_trusted_data_trains_its_reference_as_the_task_trains() -> None:
    class Described:
        contribution = "trusted-data"
        epochs, batch_size, lr = 3, 16, 0.05

    measure = measure_for(Described())
    assert isinstance(measure, TrustedData)
    assert measure.training == TrainingConfig(epochs=3, batch_size=16, lr=0.05)


def test_an_unknown_name_is_refused_with_the_names_that_exist() -> None:
    with pytest.raises(ValueError, match=r"unknown contribution measure 'shapley'.*trusted-data"):
        measure_for("shapley")
