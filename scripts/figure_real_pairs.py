"""Figure of held-out real pairs: cloudy | clear | minimum-blue | ours (the Sentinel-2 L1C model
of the fold that never saw the pair), RGB at reflectance 0..0.3, one row per pair.

    python scripts/figure_real_pairs.py --fold A runs/l1c_A/steps/step_00600.safetensors \\
        --fold B runs/l1c_B/steps/step_00600.safetensors --out docs/img/realpairs_heldout.jpg

Needs ../shared (the real pairs); exits with a message where it is absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
# thin cirrus veil, haze; min-blue's worst pair, shadows
PAIRS = {"A": ("6780", "581"), "B": ("5349", "4438")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fold", nargs=2, action="append", metavar=("NAME", "WEIGHTS"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if not (DATA / "real_clouds" / "sen12mscr_train").is_dir():
        print("../shared/data/real_clouds is absent: no figure", file=sys.stderr)
        return 0
    import torch
    from PIL import Image, ImageDraw

    from training.real_pairs import load_pairs
    from training.train_real import evidence_view, image_view
    from wsfusion_core.model import quality_weights
    from wsfusion_core.sensors import LAYOUTS
    from wsfusion_core.weights import load_weights

    pairs = {p.name.split("/")[-1]: p for p in load_pairs(DATA, folds=["g1", "g2", "g3", "g4"])}
    rows = []
    for fold, weights in a.fold:
        model, info = load_weights(weights)
        ev_idx = [LAYOUTS["s2-l1c"].bands.index(b) for b in info.evidence_bands]
        mean = info.normalisation["mean"][3:]
        std = info.normalisation["std"][3:]
        for pid in PAIRS[fold]:
            p = pairs[pid]
            ins = np.stack([p.cloudy, p.clear])
            val = np.ones((2,) + ins.shape[2:], bool)
            view = torch.from_numpy(image_view(ins, val, joint=False))[None]
            ev = torch.from_numpy(evidence_view(ins, val, ev_idx, mean, std))
            with torch.no_grad():
                w = quality_weights(model.quality_logits(view, torch.from_numpy(val)[None],
                                                         ev[None]),
                                    torch.from_numpy(val)[None])[0].numpy()
            rgb = ins[:, [3, 2, 1]]
            minblue = np.where(rgb[1, 2] <= rgb[0, 2], rgb[1], rgb[0])
            ours = (rgb * w[:, None]).sum(0)
            rows.append((f"{pid} (fold {fold})", [rgb[0], rgb[1], minblue, ours]))
    side, pad, head = 256, 4, 18
    cols = ("cloudy", "clear (answer)", "min-blue", "ours, held out")
    fig = Image.new("RGB", (4 * (side + pad) + 120, len(rows) * (side + pad) + head), "white")
    draw = ImageDraw.Draw(fig)
    for j, c in enumerate(cols):
        draw.text((120 + j * (side + pad) + 4, 2), c, fill="black")
    for i, (label, panels) in enumerate(rows):
        y = head + i * (side + pad)
        draw.text((4, y + side // 2), label, fill="black")
        for j, img in enumerate(panels):
            u8 = (np.clip(img / 0.3, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
            fig.paste(Image.fromarray(u8), (120 + j * (side + pad), y))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(a.out, quality=88)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
