"""The help text of every ``wsfusion-train`` flag: what it does, its unit and its default.

Kept beside ``train.TrainConfig`` (whose field names are the flags) rather than inside it, so
that the recipe stays readable; ``tests/training/test_train_help.py`` fails when a field has no
entry here. Defaults are added by ``train.build_parser`` from ``TrainConfig`` itself (never
written twice)."""

from __future__ import annotations

FLAG_HELP: dict[str, str] = {
    "data": "the shared data folder: segmentation/dubai (labelled tiles), segmentation/banepa "
            "(with --banepa), clouds/ (real cloud scenes; without them plain white Perlin "
            "clouds are used)",
    "out": "run folder: log.jsonl, config.json, last.pt (checkpoint), best.safetensors and "
           "last.safetensors",
    "fusion": "learned: quality net + softmax weights (the paper); mean: plain mean of the "
              "valid inputs (the baseline)",
    "clean": "train the clean upper bound instead: the segmentation net on clean single images",
    "architecture": "quality net: paper (scores each input alone) or set (also sees statistics "
                    "of the whole set of inputs)",
    "artifacts": "synthetic spoiling: paper (thick clouds or missing data, as the paper), real "
                 "(haze, clouds with shadows, overcast dates, fills, stripes, radiometric "
                 "shifts) or mixed (half the samples each)",
    "banepa": "also train on the Banepa buildings (partial labels: only buildings labelled)",
    "aux_weight": "weight of an auxiliary L1 loss between the fused and the clean image "
                  "(0 = the paper's pure weak supervision)",
    "name": "model name written into the weights' metadata (empty: wsfusion-FUSION or "
            "clean-upper-bound)",
    "epochs": "number of epochs (the lr schedule spans them)",
    "steps_per_epoch": "optimiser steps per epoch (0: samples-per-epoch / batch-size)",
    "samples_per_epoch": "synthetic samples per epoch when --steps-per-epoch is 0",
    "batch_size": "samples per optimiser step",
    "crop": "training crop side, in pixels (after the --scale downsampling)",
    "k": "numbers of inputs K per sample to draw from (one per batch)",
    "k_probs": "probability of each value of --k, same length (none: all equally likely)",
    "share": "MIN MAX: share (0..1) of each input spoiled by a cloud or a gap, drawn uniformly",
    "cloud_prob": "probability (0..1) that an input's artifact is a cloud rather than missing "
                  "data (paper artifacts)",
    "declared_prob": "probability (0..1) that missing data is marked invalid (as nodata would) "
                     "rather than left as bare values the network must learn to reject",
    "scale": "MIN MAX: downsampling factor of the crops, drawn log-uniformly (1 1: native "
             "resolution; 1 3 trains on ground pixels 1 to 3 times the data's)",
    "jitter": "strength (0 = off, 1 = full) of independent per-input photometric changes: gain "
              "+-15 %, tint +-6 %, gamma +-15 %",
    "joint_gain": "MIN MAX: one brightness gain (log-uniform) shared by all inputs of a sample "
                  "(1 1 = off)",
    "haze_strength": "MIN MAX: peak opacity (0..1) of haze veils (realistic artifacts)",
    "haze_whole": "probability (0..1) that a hazy date is veiled over its whole frame",
    "lr": "learning rate after the warm-up (Adam)",
    "lr_halvings": "halve the lr this many times, evenly over the epochs after the warm-up",
    "lr_step_epochs": "halve the lr every this many epochs instead (0: from --lr-halvings)",
    "warmup_epochs": "epochs at --warmup-lr before the schedule starts at --lr",
    "warmup_lr": "learning rate during the warm-up epochs",
    "train_tiles": "Dubai tile numbers (1-7) to train on",
    "val_tiles": "Dubai tile numbers for validation (model selection)",
    "train_clouds": "cloud sources under DATA/clouds for training (names as in "
                    "training/splits.py)",
    "val_clouds": "cloud sources for validation (keep them apart from the training clouds)",
    "val_crops": "number of fixed validation crops",
    "val_crop": "validation crop side, in pixels",
    "device": "auto (CUDA if torch sees one), cpu or cuda",
    "threads": "CPU threads torch may use",
    "workers": "data-loader worker processes making samples (0: in the training process)",
    "seed": "random seed (samples, artifacts, initial weights)",
    "budget_min": "wall-clock budget in minutes (0 = none): stops after the current step and "
                  "saves",
    "time_epochs": "with --budget-min: size the epochs by time, so the whole lr schedule runs "
                   "whatever the machine's speed",
    "recipe_note": "free text stored in the weights' metadata (why this run)",
    "user_data": "IMAGE LABELS pairs of your own data instead of the Dubai tiles: a GeoTIFF and "
                 "a label raster (0 background, 1 road, 2 building) or a vector layer (see "
                 "--class-field)",
    "class_field": "attribute of vector labels holding road / building / background or the "
                   "codes 0-2 (other values are background)",
    "line_width": "width, in map units of the image's CRS (metres for UTM), to which line "
                  "labels (roads) are buffered",
    "user_val_fraction": "share (0..1) of the bottom rows of every --user-data image kept for "
                         "validation",
    "init": "start from these weights (.safetensors, e.g. the shipped default) to fine-tune "
            "(empty: random initialisation)",
    "keep_epochs": "also write every epoch's weights to OUT/epochs/epoch_NN.safetensors",
    "ema": "exponential moving average of the weights (0 = off; 0.998 averages about the last "
           "500 steps); validation and saved weights use the average",
}
