"""plan.make_plan is pure: these cases need no store and no cloud."""

from datetime import datetime, timedelta, UTC

from providers.base import RemoteSecret, ownership_labels
from sync.reconcile.plan import Current, Deployed, Desired, make_plan

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WANT = Desired(
    "api",
    "issuing",
    ("DNS:api.example.internal",),
    "ec-p256",
    timedelta(days=30),
    None,
    (("aws", "api"), ("gcp", "api")),
)


def current(not_after=NOW + timedelta(days=60), **kw):
    base = dict(
        name="api",
        version=1,
        ca="issuing",
        sans=WANT.sans,
        key_type="ec-p256",
        not_before=not_after - timedelta(days=90),
        not_after=not_after,
        fingerprints={"aws": "f" * 32, "gcp": "e" * 32},
    )
    base.update(kw)
    return Current(**base)


def remote(name, fp, version="v1"):
    return RemoteSecret(name, ownership_labels("api", fp), version=version)


def in_sync():
    listings = {"aws": {"api": remote("api", "f" * 32)}, "gcp": {"api": remote("api", "e" * 32)}}
    deployed = [
        Deployed("api", "aws", "api", "f" * 32, "v1", True),
        Deployed("api", "gcp", "api", "e" * 32, "v1", True),
    ]
    return listings, deployed


def kinds(plan):
    return [(a.kind, a.destination, a.reason) for a in plan.actions]


def test_nothing_to_do_when_listing_matches():
    listings, deployed = in_sync()
    plan = make_plan([WANT], {"api": current()}, deployed, listings, NOW)
    assert not plan.changes
    assert [a.kind for a in plan.actions] == ["unchanged", "unchanged"]


def test_new_certificate_is_issued_and_pushed_everywhere():
    plan = make_plan([WANT], {}, [], {"aws": {}, "gcp": {}}, NOW)
    assert kinds(plan) == [
        ("issue", None, "not issued yet"),
        ("push", "aws", "new certificate version"),
        ("push", "gcp", "new certificate version"),
    ]


def test_renewal_window():
    listings, deployed = in_sync()
    assert not make_plan([WANT], {"api": current(NOW + timedelta(days=31))}, deployed, listings, NOW).changes
    plan = make_plan([WANT], {"api": current(NOW + timedelta(days=29))}, deployed, listings, NOW)
    assert plan.actions[0].kind == "renew" and "29.0 days" in plan.actions[0].reason
    assert [a.kind for a in plan.actions[1:]] == ["push", "push"]


def test_renewal_by_fraction_of_lifetime():
    want = Desired(**{**WANT.__dict__, "renew_window": None, "renew_fraction": 0.5})
    listings, deployed = in_sync()
    assert (
        make_plan([want], {"api": current(NOW + timedelta(days=44))}, deployed, listings, NOW).actions[0].kind
        == "renew"
    )
    assert not make_plan([want], {"api": current(NOW + timedelta(days=46))}, deployed, listings, NOW).changes


def test_config_change_reissues():
    listings, deployed = in_sync()
    plan = make_plan([WANT], {"api": current(sans=("DNS:old.example.internal",))}, deployed, listings, NOW)
    assert plan.actions[0].kind == "issue"


def test_drift_is_detected_from_the_listing():
    listings, deployed = in_sync()
    listings["aws"] = {}
    listings["gcp"] = {"api": remote("api", "e" * 32, version="v2")}
    plan = make_plan([WANT], {"api": current()}, deployed, listings, NOW)
    assert kinds(plan) == [
        ("push", "aws", "drift: deleted outside certsync"),
        ("push", "gcp", "drift: value replaced outside certsync"),
    ]


def test_changed_fingerprint_label():
    listings, deployed = in_sync()
    listings["aws"] = {"api": remote("api", "0" * 32)}
    plan = make_plan([WANT], {"api": current()}, deployed, listings, NOW)
    assert kinds(plan)[0] == ("push", "aws", "drift: changed outside certsync")


def test_removed_certificate_and_destination_are_deleted():
    listings, deployed = in_sync()
    deployed.append(Deployed("old", "aws", "old", "a" * 32, "v1", True))
    deployed.append(Deployed("old", "aws", "gone", "a" * 32, "v1", False))  # already deleted: nothing to do
    plan = make_plan([WANT], {"api": current()}, deployed, listings, NOW, retired=["old"])
    assert plan.changes == [plan.actions[-1]]
    assert kinds(plan)[-1] == ("delete", "aws", "certificate removed from config")
    want = Desired(**{**WANT.__dict__, "targets": (("aws", "api"),)})
    plan = make_plan([want], {"api": current()}, in_sync()[1], listings, NOW)
    assert kinds(plan)[-1] == ("delete", "gcp", "no longer a destination of this certificate")


def test_listing_failure_marks_that_destination_only():
    listings, deployed = in_sync()
    listings["gcp"] = "listing failed: boom"
    plan = make_plan([WANT], {"api": current()}, deployed, listings, NOW)
    assert kinds(plan) == [("unchanged", "aws", ""), ("error", "gcp", "listing failed: boom")]


def test_no_renewal_churn_when_the_ca_ends_first():
    listings, deployed = in_sync()
    end = NOW + timedelta(days=10)
    plan = make_plan([WANT], {"api": current(end, ca_not_after=end)}, deployed, listings, NOW)
    assert not plan.changes
    assert plan.actions[0].kind == "skip" and "with its CA 'issuing'" in plan.actions[0].reason
    # a CA that lives on: renew as usual
    plan = make_plan([WANT], {"api": current(end, ca_not_after=end + timedelta(days=300))}, deployed, listings, NOW)
    assert plan.actions[0].kind == "renew"
