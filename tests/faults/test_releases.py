"""The deploy scenario's previous release: found in git history, or refused with a clear reason."""

from __future__ import annotations

import pytest

from tests.faults import releases


def test_the_previous_release_is_the_default_unless_janus_deploy_from_names_another() -> None:
    assert releases.previous_rev({}) == releases.DEFAULT_PREVIOUS
    assert releases.previous_rev({"JANUS_DEPLOY_FROM": "HEAD~2"}) == "HEAD~2"


def test_a_revision_missing_from_the_clone_is_refused_saying_what_to_do() -> None:
    with pytest.raises(releases.ReleaseError) as refused:
        releases.resolve("no-such-release")

    assert "JANUS_DEPLOY_FROM='no-such-release': no such commit" in str(refused.value)
    assert "a full clone" in str(refused.value)


def test_the_previous_release_is_its_own_tree_imported_first() -> None:
    with releases.previous("HEAD") as release:
        assert (release.root / "alembic.ini").is_file()
        assert (release.root / "janus" / "wsgi.py").is_file()
        assert release.env()["PYTHONPATH"] == str(release.root)
        assert release.commit == releases.resolve("HEAD")
        root = release.root
        # Nothing has served from it yet: the check that its code was imported fails.
        with pytest.raises(releases.ReleaseError, match="did not import"):
            release.check_imported()
    assert not root.exists()
