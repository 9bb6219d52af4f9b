"""A resumed run that finishes loses its stale "interrupted" note (real MLflow store in tmp)."""

from fmtlbench.tracking import Tracker


def test_finished_resume_clears_interrupted_note(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "notes")
    run_id = tracker.start("r", {})
    tracker.finish("KILLED", "interrupted during round 2; resume with: fmtlbench run --resume x")
    assert "fmtlbench.status_note" in tracker.client.get_run(run_id).data.tags
    tracker.resume(run_id)
    tracker.finish("FINISHED")
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "fmtlbench.status_note" not in run.data.tags
