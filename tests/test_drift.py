"""Feature profiles, references and drift detection on generated data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelwatch import drift
from modelwatch.config import ModelConfig

START, END = "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"
NUMERIC = [f"n{i}" for i in range(16)]
CATEGORIES = {"c0": ["DE", "FR", "ES", "IT"], "c1": ["web", "app"]}
BOOLEANS = ["b0", "b1"]

pytestmark = pytest.mark.filterwarnings("error")


def _model(**drift_settings) -> ModelConfig:
    features = [{"name": name, "type": "numeric"} for name in NUMERIC]
    features += [{"name": name, "type": "categorical"} for name in CATEGORIES]
    features += [{"name": name, "type": "boolean"} for name in BOOLEANS]
    return ModelConfig(
        name="m", task="binary_classification", features=features, drift=drift_settings
    )


def _served(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Staged-like predictions of the 20 features; `shift` moves numeric means."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    columns = {"status": np.where(rng.random(n) < 0.03, "error", "ok")}
    for i, name in enumerate(NUMERIC):
        columns[f"feature__{name}"] = rng.normal(10 * i + shift.get(name, 0.0), 1 + i, n)
    for name, values in CATEGORIES.items():
        columns[f"feature__{name}"] = rng.choice(values, n)
    for name in BOOLEANS:
        columns[f"feature__{name}"] = rng.random(n) < 0.3
    score = rng.beta(2, 5, n)
    columns["score"] = score
    columns["prediction"] = np.where(score >= 0.5, "1", "0")
    return pd.DataFrame(columns)


def _reference(seed: int = 100, n: int = 20_000) -> drift.Reference:
    return drift.reference_from_frame(_served(n, seed), _model())


def _psi_row(rows: pd.DataFrame, feature: str) -> pd.Series:
    return rows[(rows.feature == feature) & (rows.method == "psi")].iloc[0]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_same_distribution_does_not_alarm(seed):
    rows, verdict = drift.detect_drift(
        _served(20_000, seed), _reference(), _model(), START, END, "training set"
    )

    assert not verdict.drifted
    assert verdict.drifted_features == []
    assert not verdict.prediction_drift
    assert not rows.drifted.any()
    assert set(rows.feature) == {*NUMERIC, *CATEGORIES, *BOOLEANS, "@prediction", "@score"}
    assert (rows[rows.method == "psi"].statistic < 0.02).all()
    tests = rows[rows.method != "psi"]
    assert (tests.adjusted_p_value.astype(float) >= 0.01).sum() >= len(tests) - 1


def test_adjusted_p_values_are_benjamini_hochberg_across_features():
    rows, _ = drift.detect_drift(
        _served(5_000, 7, shift={"n3": 2.0}), _reference(), _model(), START, END, "ref"
    )

    tests = rows[rows.method.isin(["ks", "chi2"])]
    expected = stats.false_discovery_control(tests.p_value.astype(float), method="bh")
    assert tests.adjusted_p_value.astype(float).to_numpy() == pytest.approx(expected)
    assert rows[rows.method == "psi"].p_value.map(lambda v: v is None).all()


def test_a_shifted_mean_drifts_that_feature_only():
    rows, verdict = drift.detect_drift(
        _served(20_000, 8, shift={"n5": 3.0}), _reference(), _model(), START, END, "ref"
    )

    assert verdict.drifted
    assert verdict.drifted_features == ["n5"]
    assert set(rows[rows.drifted].feature) == {"n5"}
    assert _psi_row(rows, "n5").statistic > 0.2
    assert "n5" in verdict.summary


def test_a_tiny_shift_in_a_huge_sample_is_significant_but_not_drift():
    rows, verdict = drift.detect_drift(
        _served(200_000, 9, shift={"n0": 0.1}), _reference(), _model(), START, END, "ref"
    )

    ks = rows[(rows.feature == "n0") & (rows.method == "ks")].iloc[0]
    assert ks.adjusted_p_value < 0.01
    assert ks.sample_size == drift.TEST_SAMPLE_SIZE
    assert _psi_row(rows, "n0").statistic < 0.2
    assert not verdict.drifted


def test_min_drifted_features_gates_the_verdict():
    shifted = _served(20_000, 10, shift={"n1": 5.0})
    _, one_needed = drift.detect_drift(shifted, _reference(), _model(), START, END, "ref")
    _, two_needed = drift.detect_drift(
        shifted, _reference(), _model(min_drifted_features=2), START, END, "ref"
    )

    assert one_needed.drifted and one_needed.drifted_features == ["n1"]
    assert not two_needed.drifted and two_needed.drifted_features == ["n1"]


def test_feature_threshold_overrides_the_model_threshold():
    model = _model()
    features = [
        f.model_copy(update={"drift_threshold": 5.0}) if f.name == "n2" else f
        for f in model.features
    ]
    model = model.model_copy(update={"features": features})

    rows, verdict = drift.detect_drift(
        _served(20_000, 11, shift={"n2": 4.0}), _reference(), model, START, END, "ref"
    )

    assert _psi_row(rows, "n2").threshold == 5.0
    assert _psi_row(rows, "n3").threshold == model.drift.psi_threshold
    assert not verdict.drifted


def test_a_new_category_is_counted_and_drifts():
    current = _served(20_000, 12)
    current["feature__c0"] = np.where(np.arange(20_000) % 3 == 0, "PL", current["feature__c0"])

    rows, verdict = drift.detect_drift(current, _reference(), _model(), START, END, "ref")

    c0 = rows[rows.feature == "c0"].set_index("method")
    assert c0.loc["psi", "unseen_categories"] == 1
    assert c0.loc["chi2", "unseen_categories"] == 1
    assert bool(c0.loc["psi", "drifted"])
    assert verdict.drifted_features == ["c0"]
    assert rows[rows.feature == "n0"].unseen_categories.map(lambda v: v is None).all()
    assert (rows[rows.feature == "c1"].unseen_categories == 0).all()


def test_psi_matches_a_hand_computation():
    model = ModelConfig(
        name="m", task="regression", features=[{"name": "x", "type": "numeric"}], drift={"bins": 4}
    )
    reference = drift.reference_from_frame(pd.DataFrame({"x": np.arange(1.0, 101.0)}), model)
    # reference quartile edges 25.75, 50.5, 75.25; each bin holds 25 % of the reference
    current = pd.DataFrame({"status": "ok", "feature__x": [10.0] * 5 + [60.0] * 3 + [90.0] * 2})

    rows, _ = drift.detect_drift(current, reference, model, START, END, "ref")

    shares = np.array([0.5, 1e-4, 0.3, 0.2])
    expected = float(np.sum((shares - 0.25) * np.log(shares / 0.25)))
    assert _psi_row(rows, "x").statistic == pytest.approx(expected)
    assert drift.psi([1, 1], [3, 1]) == pytest.approx(
        (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    )
    assert drift.psi([2, 0], [1, 1]) == pytest.approx(
        (0.5 - 1) * np.log(0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    )


def test_profiles_round_trip_into_the_same_reference():
    frame = _served(30_000, 13)
    model = _model()
    profiles = drift.profile_features(frame, model, START, END, sample_size=5_000)
    from_profiles = drift.reference_from_profiles(profiles)
    from_frame = drift.reference_from_frame(frame, model, sample_size=5_000)
    current = _served(20_000, 14, shift={"n7": 4.0})

    rows_a, verdict_a = drift.detect_drift(current, from_profiles, model, START, END, "ref")
    rows_b, verdict_b = drift.detect_drift(current, from_frame, model, START, END, "ref")

    pd.testing.assert_frame_equal(rows_a, rows_b)
    assert verdict_a == verdict_b
    assert verdict_a.drifted_features == ["n7"]


def test_profile_rows_hold_exact_summaries_and_a_sample():
    frame = _served(10_000, 15)
    frame.loc[:99, "feature__n0"] = np.nan
    ok = frame[frame.status == "ok"]

    rows = drift.profile_features(frame, _model(), START, END, sample_size=500)

    assert list(rows.columns) == drift.PROFILE_COLUMNS
    profiles = rows.set_index("feature")
    n0 = profiles.loc["n0"]
    values = ok.feature__n0.dropna()
    assert n0.row_count == len(ok)
    assert n0.null_count == ok.feature__n0.isna().sum()
    assert n0["mean"] == pytest.approx(values.mean())
    assert n0["std"] == pytest.approx(values.std())
    assert (n0["min"], n0["max"]) == (values.min(), values.max())
    sample = json.loads(n0.profile)["sample"]
    assert len(sample) == 500 and set(sample) <= set(values)
    b0 = profiles.loc["b0"]
    assert json.loads(b0.profile)["counts"] == {
        "true": int(ok.feature__b0.sum()), "false": int((~ok.feature__b0).sum())
    }
    assert b0["mean"] is None
    assert json.loads(profiles.loc["@prediction"].profile)["counts"].keys() <= {"0", "1"}
    again = drift.profile_features(frame, _model(), START, END, sample_size=500)
    assert again.profile.tolist() == rows.profile.tolist()


def test_categorical_columns_profile_like_plain_text():
    """Staged reads give categoricals (with categories only error rows use): same counts."""
    frame = _served(5_000, 17)
    errors = frame.index[frame.status == "error"][:5]
    frame.loc[errors, "feature__c0"] = "only_in_errors"
    frame.loc[frame.index[frame.status == "ok"][:7], "feature__c0"] = None
    as_categories = frame.astype({c: "category" for c in frame.columns if frame[c].dtype != float})

    plain = drift.profile_features(frame, _model(), START, END)
    categorical = drift.profile_features(as_categories, _model(), START, END)

    pd.testing.assert_frame_equal(plain, categorical)
    counts = json.loads(plain.set_index("feature").loc["c0", "profile"])["counts"]
    assert "only_in_errors" not in counts
    assert sum(counts.values()) == (frame.status == "ok").sum() - 7


def test_reference_pools_profiles_of_several_intervals():
    model = _model()
    first = drift.profile_features(_served(3_000, 16), model, START, END, sample_size=1_000)
    second = drift.profile_features(_served(4_000, 17), model, START, END, sample_size=1_000)

    reference = drift.reference_from_profiles(pd.concat([first, second], ignore_index=True))

    def germany(profiles: pd.DataFrame) -> int:
        return json.loads(profiles.set_index("feature").loc["c0", "profile"])["counts"]["DE"]

    assert reference.features["n0"].size == 2_000
    assert reference.features["c0"].counts["DE"] == germany(first) + germany(second)


def test_reference_from_frame_accepts_plain_and_prefixed_names():
    model = _model()
    staged = _served(2_000, 18).drop(columns=["status", "prediction", "score"])
    plain = staged.rename(columns=lambda c: c.removeprefix("feature__"))

    a = drift.reference_from_frame(staged, model)
    b = drift.reference_from_frame(plain, model)

    assert set(a.features) == set(b.features) == {*NUMERIC, *CATEGORIES, *BOOLEANS}
    assert np.array_equal(a.features["n4"].sample, b.features["n4"].sample)
    with pytest.raises(ValueError, match=r"features \['b1'\] are missing"):
        drift.reference_from_frame(plain.drop(columns=["b1"]), model)


def test_empty_reference_gives_no_rows():
    nothing = drift.reference_from_profiles(pd.DataFrame(columns=drift.PROFILE_COLUMNS))

    rows, verdict = drift.detect_drift(
        _served(1_000, 19), nothing, _model(), START, END, "trailing 7 intervals"
    )

    assert rows.empty and list(rows.columns) == drift.DRIFT_COLUMNS
    assert not verdict.drifted
    assert "no reference yet" in verdict.summary


def test_features_without_values_are_named_not_compared():
    current = _served(2_000, 20)
    current["feature__n9"] = np.nan

    rows, verdict = drift.detect_drift(current, _reference(), _model(), START, END, "ref")

    assert "n9" not in set(rows.feature)
    assert "n9 (no values this interval)" in verdict.summary


def test_regression_prediction_is_a_numeric_pseudo_feature():
    model = ModelConfig(name="r", task="regression", features=[{"name": "x", "type": "numeric"}])
    rng = np.random.default_rng(21)
    reference = drift.reference_from_frame(
        pd.DataFrame({"x": rng.normal(size=5_000), "prediction": rng.normal(5, 1, 5_000)}), model
    )
    current = pd.DataFrame(
        {
            "status": "ok",
            "feature__x": rng.normal(size=5_000),
            "prediction_value": rng.normal(8, 1, 5_000),
        }
    )

    rows, verdict = drift.detect_drift(current, reference, model, START, END, "ref")

    assert set(rows[rows.feature == "@prediction"].method) == {"psi", "ks"}
    assert verdict.prediction_drift and not verdict.drifted


def test_boundary_errors_say_what_was_expected():
    model = _model()
    with pytest.raises(ValueError, match=r"missing feature columns \['feature__n1'\]"):
        drift.profile_features(_served(100, 0).drop(columns=["feature__n1"]), model, START, END)
    with pytest.raises(ValueError, match="unknown features"):
        drift.profile_features(_served(100, 0), model, START, END, features=["nope"])
    with pytest.raises(ValueError, match="expected numbers"):
        drift.profile_features(_served(100, 0).assign(feature__n0="x"), model, START, END)
    with pytest.raises(TypeError, match="expected a Reference"):
        drift.detect_drift(_served(100, 0), {}, model, START, END, "ref")
    with pytest.raises(ValueError, match="not a JSON object"):
        drift.reference_from_profiles(
            pd.DataFrame({"feature": ["n0"], "feature_type": ["numeric"], "profile": ["{"]})
        )


def test_a_subset_of_columns_can_be_profiled():
    frame = _served(1_000, 22)[["status", "feature__n0", "feature__c0"]]

    profiles = drift.profile_features(frame, _model(), START, END, features=["n0", "c0"])

    assert profiles.feature.tolist() == ["n0", "c0"]


def test_a_million_rows_run():
    current = _served(1_000_000, 23)
    model = _model()

    profiles = drift.profile_features(current, model, START, END)
    rows, verdict = drift.detect_drift(current, _reference(), model, START, END, "ref")

    assert len(profiles) == 22
    assert not verdict.drifted
    assert len(rows) == 44
