"""The human-readable report of a training run: the table printed by the command and the starter README."""

from __future__ import annotations

from typing import Any

from .metrics import format_detection_report, format_report

README = """# Starter models

Trained on CPU from the procedural generator (`classifier/synth`) by one command, reproducibly:

    python {command}

- `vehicle.onnx` + `vehicle.json`: MobileNetV3-small (width 0.75) with heads `image_type` and `color`, on the
  vehicle crop; input `image` NCHW float32 [N,3,224,224]; outputs `image_type` [N,3] and `color` [N,12].
- `intent.onnx` + `intent.json`: the same network class with heads `intent` and `sensitive`, on the whole
  image; input `normalized_input_image_tensor` NHWC float32 [N,224,224,3] in [-1, 1]; outputs
  `shopping_intent` [N,4] and `sensitive` [N,2] (the signature of Chrome's shopping-intent classifier).
- `detector.onnx` + `detector.json`: a tiny anchor-free vehicle detector; input `images` NCHW [N,3,192,192]
  letterbox; output `output0` [N,9,144] in the YOLOv8 format (cx, cy, w, h in input pixels, then a score per
  class: car, van, truck, bus, motorcycle; the contract maps them onto the vehicle kinds car, van_suv, truck,
  bus_rv and motorcycle).

The generator draws cars, vans and SUVs, pickups, and (about one listing in four) motorcycles, buses and RVs, and
heavy trucks, in every style including the drifted advertiser's; `kind=` asks `vehicle_sample` and `drifted_sample`
for one.

Classifier outputs are logits (contract activation "softmax").
`metrics.json` holds every figure below (per-class precision/recall/F1, confusion matrices, sizes, timings).
The `sensitive` head only learns the generator's documented proxy (weapon-like silhouettes), nothing more.

## Measured on generated images

Held-out generated images (seeds disjoint from training), run through `classifier.runtime.Pipeline`: the
vehicle model on the crop the exported detector gives, as in production. Generated images are not real
listing photos: these figures say the models and the pipeline work, not how they do on real inventories.

```
{table}
```
"""


def format_table(metrics: dict[str, Any]) -> str:
    models = metrics["models"]
    lines = [f"Starter models, measured on {metrics['measured_on']}, training seed {metrics['seed']}"]
    lines.append(f"  {'model':<9} {'file':>9} {'params':>9} {'train s':>8} {'ms/img b1':>10} {'ms/img b32':>11}")
    for name, model in models.items():
        latency = model.get("latency_ms_per_image_one_thread", {})
        batch_1, batch_32 = latency.get("batch_1", float("nan")), latency.get("batch_32", float("nan"))
        lines.append(
            f"  {name:<9} {model['file_bytes'] / 1e6:>7.2f}MB {model['parameters']:>9,} "
            f"{model['training_seconds']:>8.0f} {batch_1:>10.2f} {batch_32:>11.2f}"
        )
    lines.append("")
    vehicle = models["vehicle"]
    for head, report in vehicle.get("heads", {}).items():
        lines.append(format_report(f"vehicle/{head} on the exported detector's crop", report))
        lines.append("")
    for head, report in vehicle.get("heads_ground_truth_crop", {}).items():
        lines.append(
            f"vehicle/{head} on the ground-truth crop (reference): accuracy {report['accuracy']:.3f} "
            f"macro F1 {report['macro_f1']:.3f} (n={report['n']})"
        )
    lines.append("")
    by_kind = vehicle.get("by_kind", {})
    if by_kind:
        tasks = [task for task in next(iter(by_kind.values())) if task not in ("n", "detector_kind")]
        lines.append("vehicle, per kind of the biggest vehicle (true kind; accuracy on the exported detector's crop)")
        header = " ".join(f"{task:>11}" for task in tasks)
        lines.append(f"  {'kind':<11} {'n':>5} {header} {'detector kind':>14}")
        for kind, figures in by_kind.items():
            lines.append(
                f"  {kind:<11} {figures['n']:>5} "
                + " ".join(f"{figures[task]:>11.3f}" for task in tasks)
                + f" {figures['detector_kind']:>14.3f}"
            )
        lines.append("")
    for head, report in models["intent"].get("heads", {}).items():
        lines.append(format_report(f"intent/{head} on the whole image", report))
        lines.append("")
    if "detection" in models["detector"]:
        lines.append(format_detection_report("detector", models["detector"]["detection"]))
    lines.append(f"total {metrics['total_seconds']:.0f}s (data generation {metrics['generation_seconds']:.0f}s)")
    return "\n".join(lines)
