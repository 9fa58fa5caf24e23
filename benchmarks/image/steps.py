"""How the final true R-D cost of SGA depends on the step budget and the schedule, on crops of the
evaluation photos. Each run is ``schedule:lr_decay:steps:lr[:hold[:tau_end]]`` (schedule
paper|budget, lr_decay none|cosine; hold and tau_end shape the budget schedule, defaults 0.35 and 0.05). Results accumulate in the output JSON (one record per run, with the command).

    .venv/bin/python benchmarks/image/steps.py --quality 4 --crop 256 --images 3 --threads 1 \
        --runs paper:none:2000:0.005,budget:cosine:250:0.005,budget:cosine:500:0.005
"""

from __future__ import annotations

import argparse
import json
import os
import sys


from common import setup
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.image import savi
from rdopt.infer.options import SolverOptions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--crop", default="256")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--runs", default="paper:none:2000:0.005,budget:cosine:250:0.005,budget:cosine:500:0.005,budget:cosine:1000:0.005")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--source", default="eval-set",
                    help="eval-set or a folder of training images (choose settings on training images)")
    ap.add_argument("--out", default="benchmarks/image/steps.json")
    args = ap.parse_args()
    model, ims, x = setup(args.quality, args.crop, args.images, args.threads, args.source)
    graph, target = codec_graph(model), Target(x, model.lmbda)
    doc = json.load(open(args.out)) if os.path.exists(args.out) else {"runs": []}
    doc.update({"quality": args.quality, "images": [im.name for im in ims], "crop": args.crop, "source": args.source})
    command = "benchmarks/image/steps.py " + " ".join(sys.argv[1:])
    defaults = (SolverOptions.hold, SolverOptions.tau_end)

    def save():
        annotate(doc)
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)

    for spec in filter(None, args.runs.split(",")):
        schedule, lr_decay, steps, lr, *shape = spec.split(":")
        hold, tau_end = (float(v) for v in (shape + list(defaults)[len(shape):]))
        r = savi(graph, target, SolverOptions(method="sga", steps=int(steps), schedule=schedule, lr_decay=lr_decay,
                                            lr=float(lr), hold=hold, tau_end=tau_end, progress=False))
        init, final = r.initial_loss.mean().item(), r.final_loss.mean().item()
        run = {"schedule": schedule, "lr_decay": lr_decay, "steps": int(steps), "lr": float(lr),
               "hold": hold, "tau_end": tau_end, "initial": init,
               "final": final, "gain": init - final, "relative_gain_percent": 100 * (init - final) / init,
               "seconds": r.dag.seconds, "command": command}
        ident = (schedule, lr_decay, int(steps), float(lr), hold, tau_end)
        doc["runs"] = [q for q in doc["runs"] if (q["schedule"], q["lr_decay"], q["steps"], q["lr"],
                                                  q.get("hold", defaults[0]), q.get("tau_end", defaults[1])) != ident] + [run]
        save()
        print(json.dumps(run), flush=True)
    if not args.runs:  # re-annotate an existing file only
        save()


def annotate(doc):
    """Each run's gain as a fraction of two references: the paper's 2000-step setting (schedule
    paper, no lr decay, lr 5e-3: the target of the step-budget benchmark) and the best 2000-step
    run of any schedule in the file."""
    nan = float("nan")
    paper = [q["gain"] for q in doc["runs"] if (q["schedule"], q["lr_decay"], q["steps"], q["lr"])
             == ("paper", "none", 2000, 0.005)]
    best = max([q["gain"] for q in doc["runs"] if q["steps"] == 2000] or [nan])
    for q in doc["runs"]:
        q["fraction_of_paper_2000_step_gain"] = q["gain"] / paper[0] if paper else nan
        q["fraction_of_best_2000_step_gain"] = q["gain"] / best


if __name__ == "__main__":
    main()
