"""The benchmark's pure helpers: percentiles, lateness, API server metrics, naive writes."""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    Summary,
    by_resource,
    by_verb,
    lateness,
    lateness_beyond_jitter,
    naive_writes,
    parse_samples,
    percentile,
    poll_gaps,
    ratio,
    request_counts,
    scheduled_polls,
    times_by_service,
    write_delta,
)

pytestmark = pytest.mark.unit


def _line(code: str, group: str, resource: str, sub: str, verb: str, value: int) -> str:
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="{group}",'
        f'resource="{resource}",scope="resource",subresource="{sub}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests.",
        "# TYPE apiserver_request_total counter",
        _line("201", "discovery.k8s.io", "endpointslices", "", "POST", 5),
        _line("409", "discovery.k8s.io", "endpointslices", "", "POST", 2),
        _line("200", "directservice.io", "directservices", "status", "PATCH", 7),
        _line("200", "coordination.k8s.io", "leases", "", "PUT", 3),
        _line("200", "", "services", "", "LIST", 40),
        'apiserver_request_total_other{verb="POST"} 99',
        'apiserver_request_duration_seconds_bucket{verb="POST",le="0.1"} 4',
    ]
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
    assert percentile([7.0], 99) == 7.0


def test_percentile_ignores_order_and_rejects_bad_q() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_of_empty_and_scaled() -> None:
    assert Summary.of([]).n == 0
    assert math.isnan(Summary.of([]).p99)
    summary = Summary.of([0.001, 0.002, 0.003]).scaled(1000)
    assert summary.n == 3
    assert summary.p50 == pytest.approx(2.0)
    assert summary.max == pytest.approx(3.0)
    assert summary.mean == pytest.approx(2.0)


def test_poll_gaps_are_per_service_and_sorted() -> None:
    gaps = poll_gaps({"a": [10.0, 0.0, 5.0], "b": [3.0], "c": []})
    assert sorted(gaps) == [5.0, 5.0]


def test_lateness_is_gap_minus_interval() -> None:
    assert lateness([5.2, 4.8, 6.0], 5.0) == pytest.approx([0.2, -0.2, 1.0])


def test_lateness_beyond_jitter_only_counts_what_jitter_cannot_explain() -> None:
    # ±5 % of 5 s is ±250 ms: a 5.25 s gap is still on time, a 5.5 s gap is 250 ms late.
    assert lateness_beyond_jitter([4.75, 5.25, 5.5], 5.0) == pytest.approx([0.0, 0.0, 0.25])


def test_scheduled_polls() -> None:
    assert scheduled_polls(1000, 120.0, 5.0) == 24_000


def test_times_by_service_filters_window_and_services() -> None:
    log = [
        {"service": "a", "time": 1.0},
        {"service": "a", "time": 2.0},
        {"service": "a", "time": 9.0},
        {"service": "b", "time": 2.0},
        {"service": "x", "time": 2.0},
        {"service": "a", "time": None},
    ]
    assert times_by_service(log, 1.5, 5.0, ["a", "b", "c"]) == {"a": [2.0], "b": [2.0], "c": []}


def test_parse_samples_reads_labels_and_only_the_named_metric() -> None:
    samples = parse_samples(METRICS, "apiserver_request_total")
    assert len(samples) == 5
    labels, value = samples[0]
    assert labels["verb"] == "POST"
    assert labels["resource"] == "endpointslices"
    assert labels["group"] == "discovery.k8s.io"
    assert value == 5.0


def test_parse_samples_unescapes_label_values() -> None:
    text = 'm{a="x\\"y",b="c\\\\d"} 1.5e3\n'
    assert parse_samples(text, "m") == [({"a": 'x"y', "b": "c\\d"}, 1500.0)]


def test_request_counts_sum_over_codes() -> None:
    counts = request_counts(METRICS)
    assert counts[("POST", "endpointslices", "")] == 7
    assert counts[("PATCH", "directservices", "status")] == 7
    assert counts[("LIST", "services", "")] == 40


def test_write_delta_counts_only_writes_and_chosen_resources() -> None:
    before = request_counts(METRICS)
    after = before.copy()
    after[("POST", "endpointslices", "")] += 3
    after[("PUT", "leases", "")] += 2
    after[("LIST", "services", "")] += 100
    after[("DELETE", "endpointslices", "")] = 1  # a key that did not exist before
    everything = write_delta(before, after)
    assert by_verb(everything) == {"DELETE": 1, "POST": 3, "PUT": 2}
    ours = write_delta(before, after, {"endpointslices"})
    assert by_resource(ours) == {"DELETE endpointslices": 1, "POST endpointslices": 3}
    assert by_resource(write_delta(before, before)) == {}


def test_by_resource_names_subresources() -> None:
    assert by_resource({("PATCH", "directservices", "status"): 2}) == {
        "PATCH directservices/status": 2
    }


@pytest.mark.parametrize(
    ("before", "after", "naive"),
    [(100, 100, 100), (100, 110, 110), (110, 100, 110), (0, 3, 3), (1, 1, 1)],
)
def test_naive_writes_rewrite_every_slice_and_delete_the_rest(
    before: int, after: int, naive: int
) -> None:
    assert naive_writes(before, after) == naive


def test_ratio() -> None:
    assert ratio(1, 100) == 0.01
    assert math.isnan(ratio(0, 0))
