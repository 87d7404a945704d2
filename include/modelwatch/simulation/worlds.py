"""Hidden worlds: how requests, context and true outcomes are generated for a model.

A world draws the features the serving system logs, the request context, the
true outcome (the label that arrives later) and the server latency. Two worlds
are hand-made for the shipped examples (`credit_risk`, `delivery_time`); any
other model gets a `GenericWorld` built from its feature configuration, so the
simulator works for any models file.

Every array a world returns has one entry per request. Numeric features are
float64 (NaN = null), categorical features are object arrays of str, boolean
features are bool arrays.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from modelwatch.batch import context_keys
from modelwatch.config import FeatureConfig, ModelConfig

Arrays = dict[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def pick(rng: np.random.Generator, values: list[str], probs: list[float], n: int) -> np.ndarray:
    """n draws of `values` with probabilities `probs`, as an object array of str."""
    index = rng.choice(len(values), size=n, p=np.asarray(probs) / np.sum(probs))
    return np.asarray(values, dtype=object)[index]


def pick_rows(rng: np.random.Generator, values: list[str], probs: np.ndarray) -> np.ndarray:
    """One draw per row, row i with its own probabilities `probs[i]` (rows sum to 1)."""
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(probs))[:, None]
    index = np.minimum((u > cumulative).sum(axis=1), len(values) - 1)
    return np.asarray(values, dtype=object)[index]


def lookup(mapping: dict[str, float], keys: np.ndarray) -> np.ndarray:
    """Map each key through `mapping` (0.0 for keys it does not name)."""
    out = np.zeros(len(keys))
    for key, value in mapping.items():
        out[keys == key] = value
    return out


def translate(mapping: dict[str, str], keys: np.ndarray) -> np.ndarray:
    """Map each key through `mapping` to a str (None for keys it does not name)."""
    out = np.full(len(keys), None, dtype=object)
    for key, value in mapping.items():
        out[keys == key] = value
    return out


@dataclass
class World:
    """Base of the hidden worlds: task, latency profile and feature facts."""

    model: ModelConfig
    latency_median_ms: float = 20.0
    latency_sigma: float = 0.4
    decimals: dict[str, int] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def default_drift_feature(self) -> str:
        """The feature a drift incident moves when it names none."""
        numeric = [f.name for f in self.model.features if f.type == "numeric"]
        return numeric[0] if numeric else self.model.features[0].name

    @property
    def key_features(self) -> list[str]:
        """The most informative features: a bad version is trained without them."""
        names = [f.name for f in self.model.features]
        return names[: max(1, len(names) // 2)]

    def sample(self, rng: np.random.Generator, minute_of_day: np.ndarray) -> Arrays:
        raise NotImplementedError

    @property
    def categories(self) -> dict[str, list[str]]:
        """Categorical features and the values this world draws for them."""
        return {}

    def own_context(self, rng: np.random.Generator, features: Arrays) -> Arrays:
        """The context keys this world knows how to draw."""
        return {}

    def context(self, rng: np.random.Generator, features: Arrays) -> Arrays:
        """The request context: the world's own keys, plus any configured segment key it lacks."""
        context = self.own_context(rng, features)
        n = len(next(iter(features.values())))
        for key in context_keys(self.model):
            if key not in context:
                context[key] = generic_context(rng, key, n)
        return context

    def target(
        self, rng: np.random.Generator, features: Arrays, context: Arrays, concept: float
    ) -> np.ndarray:
        """True outcome per request; `concept` in [0, 1] blends in the drifted relationship."""
        raise NotImplementedError

    def latency(self, rng: np.random.Generator, load: np.ndarray) -> np.ndarray:
        """Server latency in ms, lognormal, slower when traffic (`load` in [0, 1]) is high."""
        base = rng.lognormal(np.log(self.latency_median_ms), self.latency_sigma, len(load))
        return base * (0.85 + 0.3 * load)

    def round_features(self, features: Arrays) -> Arrays:
        """Round numeric features to the precision the serving system logs."""
        for feature in self.model.features:
            if feature.type == "numeric":
                features[feature.name] = np.round(
                    features[feature.name], self.decimals.get(feature.name, 3)
                )
        return features


def generic_context(rng: np.random.Generator, key: str, n: int) -> np.ndarray:
    """Values `<key>_1` … `<key>_4` with skewed frequencies, for context keys a world lacks."""
    values = [f"{key}_{i}" for i in range(1, 5)]
    return pick(rng, values, [0.4, 0.3, 0.2, 0.1], n)


class CreditRiskWorld(World):
    """Loan applications; the label is 1 when the applicant defaults."""

    COUNTRIES = ["DE", "FR", "ES", "IT", "NL", "PL"]
    COUNTRY_SHARE = [0.28, 0.22, 0.16, 0.15, 0.10, 0.09]
    COUNTRY_INCOME = {"DE": 0.10, "FR": 0.02, "ES": -0.15, "IT": -0.08, "NL": 0.14, "PL": -0.30}
    REGION = {
        "DE": "eu-central",
        "PL": "eu-central",
        "FR": "eu-west",
        "NL": "eu-west",
        "ES": "eu-south",
        "IT": "eu-south",
    }
    EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
    #: logit coefficients before (index 0) and after (index 1) a concept drift
    COEF = {
        "intercept": (-1.05, -0.75),
        "log_income": (-1.5, -0.3),
        "debt_ratio": (3.8, 0.6),
        "age": (-0.03, 0.01),
        "credit_lines": (0.07, 0.35),
        "has_card": (-0.6, 0.7),
        "stress": (1.3, 0.0),
    }
    EMPLOYMENT_EFFECT = (
        {"salaried": 0.0, "self_employed": 0.6, "unemployed": 2.0, "retired": 0.3},
        {"salaried": 0.4, "self_employed": -0.4, "unemployed": 0.3, "retired": 0.9},
    )
    COUNTRY_EFFECT = {"DE": -0.2, "FR": 0.0, "ES": 0.3, "IT": 0.25, "NL": -0.3, "PL": 0.15}

    def __init__(self, model: ModelConfig):
        super().__init__(
            model,
            latency_median_ms=24.0,
            latency_sigma=0.42,
            decimals={"income": 0, "age": 0, "debt_ratio": 3, "credit_lines": 0},
        )

    @property
    def categories(self) -> dict[str, list[str]]:
        return {"country": self.COUNTRIES, "employment": self.EMPLOYMENT}

    @property
    def default_drift_feature(self) -> str:
        return "income"

    @property
    def key_features(self) -> list[str]:
        return ["debt_ratio", "employment", "income"]

    def sample(self, rng, minute_of_day):
        n = len(minute_of_day)
        country = pick(rng, self.COUNTRIES, self.COUNTRY_SHARE, n)
        income = np.exp(rng.normal(np.log(42000) + lookup(self.COUNTRY_INCOME, country), 0.55))
        age = np.clip(np.round(rng.normal(41, 12, n)), 18, 90)
        old = age >= 63
        employment_probs = np.where(
            old[:, None], [0.12, 0.08, 0.02, 0.78], [0.70, 0.19, 0.09, 0.02]
        )
        employment = pick_rows(rng, self.EMPLOYMENT, employment_probs)
        unemployed = employment == "unemployed"
        debt_ratio = np.clip(rng.beta(2.2, 4.5, n) * 1.4 + 0.25 * unemployed, 0, 5)
        return self.round_features(
            {
                "income": np.clip(np.round(income, -2), 3000, 2_000_000),
                "age": age,
                "debt_ratio": debt_ratio,
                "credit_lines": np.clip(rng.poisson(2 + age / 15), 0, 60).astype(float),
                "country": country,
                "employment": employment,
                "has_card": rng.random(n) < 0.35 + 0.4 * (income > 40000),
            }
        )

    def own_context(self, rng, features):
        return {
            "channel": pick(
                rng, ["web", "app", "branch"], [0.52, 0.38, 0.10], len(features["country"])
            ),
            "region": translate(self.REGION, features["country"]),
        }

    def target(self, rng, features, context, concept):
        coef = {key: (1 - concept) * a + concept * b for key, (a, b) in self.COEF.items()}
        employment = {
            key: (1 - concept) * self.EMPLOYMENT_EFFECT[0][key]
            + concept * self.EMPLOYMENT_EFFECT[1][key]
            for key in self.EMPLOYMENT
        }
        debt = features["debt_ratio"]
        stressed = (debt > 0.9) & np.isin(features["employment"], ["unemployed", "self_employed"])
        logit = (
            coef["intercept"]
            + coef["log_income"] * (np.log(np.maximum(features["income"], 1.0)) - np.log(42000))
            + coef["debt_ratio"] * (debt - 0.45)
            + coef["age"] * (features["age"] - 41)
            + coef["credit_lines"] * (features["credit_lines"] - 4.7)
            + coef["has_card"] * features["has_card"].astype(float)
            + coef["stress"] * stressed
            + lookup(employment, features["employment"])
            + lookup(self.COUNTRY_EFFECT, features["country"])
        )
        return (rng.random(len(logit)) < sigmoid(logit)).astype(float)


class DeliveryTimeWorld(World):
    """Food-delivery orders; the label is the delivery time in minutes."""

    CITIES = ["berlin", "paris", "madrid", "milan", "amsterdam", "warsaw"]
    CITY_SHARE = [0.22, 0.20, 0.16, 0.14, 0.12, 0.16]
    CITY_CONGESTION = {
        "berlin": 1.0,
        "paris": 3.0,
        "madrid": 1.5,
        "milan": 2.0,
        "amsterdam": 0.0,
        "warsaw": 1.0,
    }
    WEATHER = ["clear", "rain", "snow", "fog"]
    WEATHER_SHARE = [0.64, 0.22, 0.05, 0.09]
    WEATHER_DELAY = {"clear": 0.0, "rain": 3.5, "snow": 11.0, "fog": 2.5}
    VEHICLES = ["bike", "scooter", "car"]
    MINUTES_PER_KM = {"bike": 4.2, "scooter": 2.9, "car": 2.3}
    PEAK_HOURS = (11, 12, 13, 18, 19, 20)

    def __init__(self, model: ModelConfig):
        super().__init__(
            model,
            latency_median_ms=15.0,
            latency_sigma=0.38,
            decimals={"distance_km": 2, "items": 0, "hour_of_day": 0, "prep_minutes": 1},
        )

    @property
    def categories(self) -> dict[str, list[str]]:
        return {"weather": self.WEATHER, "vehicle": self.VEHICLES}

    @property
    def default_drift_feature(self) -> str:
        return "distance_km"

    @property
    def key_features(self) -> list[str]:
        return ["prep_minutes", "distance_km", "items"]

    def sample(self, rng, minute_of_day):
        n = len(minute_of_day)
        hour = minute_of_day // 60
        distance = np.clip(rng.lognormal(np.log(3.2), 0.6, n), 0.2, 40)
        items = np.clip(1 + rng.poisson(2.2, n), 1, 60).astype(float)
        is_peak = np.isin(hour, self.PEAK_HOURS)
        prep = np.clip(4 + 2.2 * items + rng.gamma(2.0, 3.0, n) + 4 * is_peak, 0, 120)
        p_car = np.clip(0.08 + 0.06 * distance, 0, 0.85)
        p_bike = (1 - p_car) * np.clip(0.65 - 0.08 * distance, 0.1, 0.65)
        vehicle_probs = np.column_stack([p_bike, 1 - p_car - p_bike, p_car])
        return self.round_features(
            {
                "distance_km": distance,
                "items": items,
                "hour_of_day": hour.astype(float),
                "prep_minutes": prep,
                "weather": pick(rng, self.WEATHER, self.WEATHER_SHARE, n),
                "vehicle": pick_rows(rng, self.VEHICLES, vehicle_probs),
                "is_peak": is_peak,
            }
        )

    def own_context(self, rng, features):
        n = len(features["weather"])
        return {
            "city": pick(rng, self.CITIES, self.CITY_SHARE, n),
            "channel": pick(rng, ["app", "web", "partner"], [0.68, 0.26, 0.06], n),
        }

    def target(self, rng, features, context, concept):
        distance, prep = features["distance_km"], features["prep_minutes"]
        car = features["vehicle"] == "car"
        minutes = (
            6.0
            + 0.85 * prep
            + distance * lookup(self.MINUTES_PER_KM, features["vehicle"])
            + 0.6 * features["items"]
            + features["is_peak"] * np.where(car, 5.0, 2.0)
            + lookup(self.WEATHER_DELAY, features["weather"])
            + lookup(self.CITY_CONGESTION, context["city"])
            + 0.25 * np.maximum(distance - 8, 0) ** 1.5
            + concept * (0.45 * prep + 1.5 * distance + 4.0)
            + rng.normal(0, 2.5 + 0.08 * distance)
        )
        return np.round(np.maximum(minutes, 3.0), 1)


@dataclass(frozen=True)
class NumericShape:
    """How a generic numeric feature is drawn, with its mean and spread."""

    kind: str  # "beta" | "above" | "below" | "normal"
    a: float
    b: float
    low: float
    high: float
    center: float
    scale: float


def numeric_shape(feature: FeatureConfig, rng: np.random.Generator) -> NumericShape:
    """A plausible distribution that respects the feature's configured min and max."""
    low, high = feature.min, feature.max
    if low is not None and high is not None:
        a, b = rng.uniform(1.5, 4.0, 2)
        width = high - low
        center = low + width * a / (a + b)
        scale = width * np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        return NumericShape("beta", a, b, low, high, center, scale)
    shape, spread = rng.uniform(1.5, 4.0), rng.uniform(1.0, 20.0)
    if low is not None:
        return NumericShape(
            "above", shape, spread, low, np.inf, low + shape * spread, np.sqrt(shape) * spread
        )
    if high is not None:
        return NumericShape(
            "below", shape, spread, -np.inf, high, high - shape * spread, np.sqrt(shape) * spread
        )
    loc = rng.uniform(-50, 50)
    return NumericShape("normal", loc, spread, -np.inf, np.inf, loc, spread)


def draw_numeric(shape: NumericShape, rng: np.random.Generator, n: int) -> np.ndarray:
    if shape.kind == "beta":
        return shape.low + (shape.high - shape.low) * rng.beta(shape.a, shape.b, n)
    if shape.kind == "above":
        return shape.low + rng.gamma(shape.a, shape.b, n)
    if shape.kind == "below":
        return shape.high - rng.gamma(shape.a, shape.b, n)
    return rng.normal(shape.a, shape.b, n)


class GenericWorld(World):
    """A world for any configured model, drawn from its feature configuration.

    Numeric features stay within their configured min and max, categorical
    features take their allowed values (or `<name>_1` … `<name>_5` when none are
    configured). The hidden outcome is a random linear function of the
    standardized features plus an interaction of the first two numeric ones; a
    concept drift flips the sign of every other feature's effect.
    """

    def __init__(self, model: ModelConfig, seed: int):
        super().__init__(model)
        rng = np.random.default_rng([seed, stable_hash(model.name), 0x5EED])
        self.shapes: dict[str, NumericShape] = {}
        self.levels: dict[str, tuple[list[str], np.ndarray, dict[str, float]]] = {}
        self.effects: dict[str, float] = {}
        for feature in model.features:
            if feature.type == "numeric":
                self.shapes[feature.name] = numeric_shape(feature, rng)
                self.effects[feature.name] = rng.normal(0, 1)
            elif feature.type == "categorical":
                values = feature.allowed_values or [f"{feature.name}_{i}" for i in range(1, 6)]
                probs = 1.0 / np.arange(1, len(values) + 1) ** 0.8
                effect = dict(zip(values, rng.normal(0, 0.8, len(values)), strict=True))
                self.levels[feature.name] = (values, probs / probs.sum(), effect)
                self.effects[feature.name] = float(np.std(list(effect.values())))
            else:
                self.effects[feature.name] = rng.normal(0, 0.8)
        self.true_share = {
            f.name: rng.uniform(0.2, 0.7) for f in model.features if f.type == "boolean"
        }
        self.flipped = {f.name for f in model.features[::2]}

    @property
    def key_features(self) -> list[str]:
        ranked = sorted(self.effects, key=lambda name: -abs(self.effects[name]))
        return ranked[: max(1, len(ranked) // 2)]

    def sample(self, rng, minute_of_day):
        n = len(minute_of_day)
        features: Arrays = {}
        for feature in self.model.features:
            if feature.type == "numeric":
                features[feature.name] = draw_numeric(self.shapes[feature.name], rng, n)
            elif feature.type == "categorical":
                values, probs, _ = self.levels[feature.name]
                features[feature.name] = pick(rng, values, list(probs), n)
            else:
                features[feature.name] = rng.random(n) < self.true_share[feature.name]
        return self.round_features(features)

    def target(self, rng, features, context, concept):
        n = len(next(iter(features.values())))
        total, variance, standardized = np.zeros(n), 0.0, []
        for feature in self.model.features:
            sign = 1 - 2 * concept if feature.name in self.flipped else 1.0
            values = features[feature.name]
            if feature.type == "numeric":
                shape = self.shapes[feature.name]
                z = (values - shape.center) / shape.scale
                standardized.append(z)
                contribution = self.effects[feature.name] * z
            elif feature.type == "categorical":
                contribution = lookup(self.levels[feature.name][2], values)
            else:
                contribution = self.effects[feature.name] * values.astype(float)
            total += sign * contribution
            variance += self.effects[feature.name] ** 2
        if len(standardized) >= 2:
            total += 0.7 * standardized[0] * standardized[1]
            variance += 0.49
        signal = total / np.sqrt(max(variance, 1e-9))
        if self.task == "binary_classification":
            return (rng.random(n) < sigmoid(2.5 * signal - 0.8)).astype(float)
        return np.round(100 + 20 * signal + rng.normal(0, 4, n), 3)


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's `hash` is salted per process)."""
    return zlib.crc32(text.encode())


def _signature(model: ModelConfig) -> set[tuple[str, str]]:
    return {(f.name, f.type) for f in model.features}


_HAND_MADE = {
    "credit_risk": (
        CreditRiskWorld,
        "binary_classification",
        {
            ("income", "numeric"),
            ("age", "numeric"),
            ("debt_ratio", "numeric"),
            ("credit_lines", "numeric"),
            ("country", "categorical"),
            ("employment", "categorical"),
            ("has_card", "boolean"),
        },
    ),
    "delivery_time": (
        DeliveryTimeWorld,
        "regression",
        {
            ("distance_km", "numeric"),
            ("items", "numeric"),
            ("hour_of_day", "numeric"),
            ("prep_minutes", "numeric"),
            ("weather", "categorical"),
            ("vehicle", "categorical"),
            ("is_peak", "boolean"),
        },
    ),
}


def _allows(model: ModelConfig, categories: dict[str, list[str]]) -> bool:
    """Whether every category a hand-made world draws is allowed by the configuration."""
    return all(
        set(values) <= set(model.feature(name).allowed_values or values)
        for name, values in categories.items()
    )


def world_for(model: ModelConfig, seed: int) -> World:
    """The hand-made world when the model is one of the shipped examples, else a generic one."""
    made = _HAND_MADE.get(model.name)
    if made is not None and model.task == made[1] and _signature(model) == made[2]:
        world = made[0](model)
        if _allows(model, world.categories):
            return world
    return GenericWorld(model, seed)
