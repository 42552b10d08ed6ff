"""The run loop's machinery: keep this package when you replace the template's example pipeline with yours.

tasks.py tells what each command does, step by step; these modules hold what the commands share, in layers that
each import only the layers below them:

  flows (one per command's logic)
    run_tag          run tags: the checks before a launch, the tag's name, pushing it alone
    route            the workflow's route job: the tag's runner class mapped to the run job's runs-on labels
    lock_venv        the run job's environment step (and reproduce's): a venv per Pipfile.lock, built once, kept
    sweep            sweeps: the legs, their commits and tags, the table (sweep_grammar: --set; params_yaml: edits)
    results          invoke share: checks, the plan, the data first, then the results record and its push
    failure          the workflow's last step: the record of a failed or cancelled run (standard library only)
    follow           invoke watch: following runs until they end, exit 0 / 1 / 2
    comparison       two runs side by side: DVC's params, metrics and plots diffs
    registry         the MLflow Model Registry seen from a run: its model versions; invoke promote
    reproduction     nox -s reproduce: a past run recomputed in a worktree and a venv of its lock
    rehearsal        nox -s workflow: the workflow rehearsed by act against throwaway services
    project          the project's name and every file that repeats it; invoke init (skeleton: its stage)
    checks           the checks repro makes around the pipeline, which `invoke doctor` shows as rows
    report           what a run prints and writes to the job summary; `invoke runs`' tables
    retention        invoke gc: which runs are kept, what stays and goes on the DVC remote and in MLflow, deleting
                     in a safe order; a local DVC cache pruned under a size
  the run model
    record           a run's record: the tag's annotation, the outcome commit's message; every format ever written
    runs             the runs as git knows them: one context per command, listed once, a spec resolved
    lock             dvc.yaml and dvc.lock: one Output, one Lock, the rule for what the remote can carry
    outcome_commit   the commit that ends a run: what it holds, its branch, pushing it without force
  adapters
    git              git as argument lists: the one wrapper
    ci               the CI host's facts (GitHub Actions): the tag, run page, attempt, step summary, settings
    actions_api      GitHub's Actions REST API, read only: a tag's workflow run, its step, how it ended
    step_log         the workflow's shell: each step's output kept for the failure record
    dvc_repo         DVC asked in-process, its repository opened once: status, outputs, metrics, diffs, push
    dvc_remote       the DVC remote: is one configured, its machine-specific settings, a probe of its bucket
    dvc_store        a DVC store's objects in DVC 3's layout (an S3 prefix, a folder, a cache): listed, read, deleted
    pipeline         `dvc repro` as a process group a signal stops, without DVC's reminders
    tracking         MLflow runs of the stages and the records (runs/<stage>.json) that name them
    mlflow_runs      MLflow runs found by their run tag, with their artifacts, logged models and versions; deleted
    mlflow_server    the MLflow tracking server asked over its REST API, with a short timeout
    act              act running the workflow on this machine, as the runner would (stand_ins/: actions it runs
                     in place of those that need GitHub itself)
    runner_cache     what a self-hosted runner keeps between jobs: the venvs, DVC's cache (linked into workspaces)
    dvc_locks        DVC's locks in a workspace: what a dead process left, cleared; a live holder, named
    services         throwaway moto S3, MLflow server and bare origin on loopback, for tests and rehearsals
  base
    environment      .env, the settings a run reads, the MLflow tracking URI, redaction of URLs and messages
    stage            helpers every pipeline stage uses: its params section, one clear line for a bad input
    runner           where a task runs: the project root, the pipeline's environment, the CI run's settings
    runner_classes   invoke.yaml's runner classes: class → runs-on labels, and the default
    invoke_yaml      invoke.yaml's runloop section read with the standard library (the runner's first steps)
    push_credential  the push token: kept from the pipeline, given to git's fetch and push alone
    packages         this Python and its installed packages against Pipfile and Pipfile.lock
    processes        process groups, signals, children that die with their parent
    disk             the disk under a folder: a write that ran out of room, the room left, what a folder holds
    machine          the machine a run ran on: Python, OS, CPU, BLAS, GPUs
    refusal          Refused: what is wrong and what to do, in one line

Stages import only `environment`, `stage` and `tracking` (and what those import: `git`, `machine`, `refusal`;
dvc.yaml lists them as the stages' dependencies), so a change to the rest of the machinery never invalidates a
stage's results. Everything here is cheap to import: mlflow and dvc are imported inside the functions that need
them, and `failure`, `step_log`, `route`, `lock_venv` and what they import need nothing but the standard library.
"""
