"""The emulated cluster's cgroups: created with the quotas asked for, ranks join their group through the
command prefix, CPU time is accounted, and everything is removed afterwards (real cgroups: CI runs as
root)."""
from __future__ import annotations

import os
import subprocess

import pytest

from pipeinfer.evaluation.cgroups import CgroupCluster, ClusterError, detect


def test_groups_quota_membership_accounting_and_teardown():
    cl = CgroupCluster([0.3, 0.5], period_us=10000, name=f"pipeinfer-test-{os.getpid()}")
    with cl:
        assert len(cl.groups) == 2
        g0 = cl.groups[0][0]
        if cl.version == "v1":
            assert (g0 / "cpu.cfs_period_us").read_text().strip() == "10000"
            assert (g0 / "cpu.cfs_quota_us").read_text().strip() == "3000"
        else:
            assert (g0 / "cpu.max").read_text().split() == ["3000", "10000"]
        cl.start_accounting()
        # rank 1 burns CPU for a moment inside its group and reports the group it landed in
        out = subprocess.run(cl.rank_prefix() + ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
                                                            "cat /proc/self/cgroup"],
                             env=dict(os.environ, PMI_RANK="1"), capture_output=True, text=True, check=True).stdout
        assert f"{cl.name}/rank1" in out
        share = cl.check_shares()
        assert share["cpu_s"][1] > 0.0 and share["cpu_s"][0] == 0.0
        assert share["ok"], share
        assert len(cl.throttled()) == 2
    assert not any(d.exists() for dirs in cl.groups for d in dirs)
    assert not any(p.exists() for p in cl._parents())


def test_a_rank_without_rank_variable_fails_clearly():
    with CgroupCluster([0.2], name=f"pipeinfer-test-{os.getpid()}-b") as cl:
        env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK",
                                                                "SLURM_PROCID")}
        r = subprocess.run(cl.rank_prefix() + ["true"], env=env, capture_output=True, text=True)
        assert r.returncode == 97 and "no rank" in r.stderr


@pytest.mark.parametrize("quotas, period, match", [([], 10000, "at least one rank"), ([0.0], 10000, "quota of rank 0"),
                                                   ([0.5], 10, "period_us")])
def test_bad_settings_are_named(quotas, period, match):
    with pytest.raises(ClusterError, match=match):
        CgroupCluster(quotas, period_us=period)


def test_detect_names_the_controller():
    assert detect() in ("v1", "v2")
