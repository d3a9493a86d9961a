"""The provider registry: each kind parses its own section and picks its call budget."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.api.spec import SpecError
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.budget import RateBudgets
from directservice.discovery.modelarts.provider import ModelArtsProvider
from directservice.discovery.registry import kinds

MODELARTS: dict[str, Any] = {
    "provider": {
        "modelArts": {
            "endpoint": "https://ma.example",
            "projectId": "p",
            "serviceId": "s",
            "credentialsSecretRef": {"name": "c", "tokenKey": "token"},
        }
    }
}


def test_every_kind_is_registered_once() -> None:
    assert kinds() == ("httpJson", "modelArts", "paiEas", "static")


@pytest.mark.parametrize(
    ("spec_calls", "operator_calls", "expected"),
    [(None, None, 20.0), (None, 50.0, 50.0), (600, 50.0, 600)],
)
def test_the_budget_is_the_spec_s_else_the_operator_s_else_the_provider_s(
    spec_calls: int | None, operator_calls: float | None, expected: float
) -> None:
    raw = dict(MODELARTS, **({"rateBudget": {"callsPerMinute": spec_calls}} if spec_calls else {}))
    defaults = {"modelArts": operator_calls} if operator_calls else {}
    provider = provider_for(parse_spec(raw), budgets=RateBudgets(defaults=defaults))
    assert isinstance(provider, ModelArtsProvider)
    assert provider.calls_per_minute == expected


def test_a_provider_section_that_is_not_an_object_names_it() -> None:
    with pytest.raises(SpecError, match=r"spec\.provider\.paiEas must be an object"):
        parse_spec({"provider": {"paiEas": "http://eas.example"}})
