"""The run loop's machinery: keep this package when you replace the example pipeline (src/example/) with yours.

tasks.py tells what each command does, step by step; these modules hold what the commands share:

    environment      .env, the settings a run reads, the MLflow tracking URI, redaction of URLs and messages
    stage            helpers every pipeline stage uses: its params section, one clear line for a bad input
    tracking         MLflow runs of the stages and the records (runs/<stage>.json) that name them
    commands         running git and DVC as argument lists, never as shell text
    project          the project's name (invoke.yaml) and every file that repeats it; `invoke init`
    skeleton         the one-stage pipeline `invoke init` puts in place of the example
    runner           what a run needs on the CI runner: settings, Python, the pipeline's environment
    run_tag          run tags: their names, the branch (and sweep) recorded in them, where to watch them
    sweep            sweeps: --set's grammar, the legs and their commits (params.yaml edited in place), the table
    watch            following runs until their results land: a status line each, exit 0 / 1 / 2
    actions_api      GitHub's Actions REST API, read only: a tag's workflow run, its step, how it ended
    dvc_remote       the DVC remote: is one configured, its machine-specific settings, a probe of its bucket
    results_commit   the "<subject>-results" commit: what it holds, its message, its branch, pushing it safely
    dvc_repo         DVC asked in-process, its repository opened once: status, outputs, metrics, diffs, push
    push_credential  the push token: kept from the pipeline, given to share's git fetch and push alone
    interrupts       SIGINT/SIGTERM: stop the children, exit in one line
    report           what a run prints and writes to the job summary
    checks           the checks repro makes before and after the pipeline, which `invoke doctor` shows as rows
    pipeline         dvc.yaml/dvc.lock read directly; `dvc repro` as a process group, without DVC's reminders
    packages         this Python and its installed packages against Pipfile and Pipfile.lock
    mlflow_server    the MLflow tracking server asked over its REST API, with a short timeout
    registry         the MLflow Model Registry seen from a run: its model versions, `invoke promote`
    services         throwaway moto S3, MLflow server and bare origin on loopback, for tests and rehearsals
    rehearsal        `nox -s workflow`: the workflow run by act as the runner would, against throwaway services

Stages import only `environment`, `stage` and `tracking` (dvc.yaml lists them as the stages' dependencies), so a
change to the rest of the machinery never invalidates a stage's results. Everything here is cheap to import:
mlflow and dvc are imported inside the functions that need them.
"""
