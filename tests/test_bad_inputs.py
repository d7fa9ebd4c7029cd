"""Bad input, table-driven: every case exits 2 with a message naming what was wrong, prints no
traceback, and writes nothing (the whole working tree is hashed before and after).

The cases share one prepared tree (a finished run, a results folder, tables good and broken,
damaged checkpoints) that no case may change; `{W}` in an argument stands for its path.
"""

from __future__ import annotations

import shlex
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from tests.fixtures import TINY, set_args, tree_hashes


def _train(*extra: str) -> list[str]:
    return ["train", "--out", "{W}/new_run", *set_args(*TINY, "train.epochs=1", *extra)]


def _spec(name: str) -> str:
    return f"{{W}}/specs/{name}.yaml"


SPECS = {
    "ok": "name: ok\nbase: {model: {width: 4}, data: {count: 8, size: [32, 32]}}\n",
    "invalid_yaml": "name: [unclosed\n",
    "list": "- name: x\n",
    "typo_section": "name: x\ngrdi: {model.rates: [[6]]}\n",
    "not_a_field": "name: x\ngrid: {model.rate: [[6]]}\n",
    "empty_axis": "name: x\ngrid: {model.rates: []}\n",
    "zip_lengths": "name: x\nzip: [{model.arch: [unet, aspp_unet], model.width: [8]}]\n",
    "seed_in_grid": "name: x\ngrid: {train.seed: [1, 2]}\n",
    "no_seeds": "name: x\nseeds: []\n",
    "executor": "name: x\nlaunch: {executor: kubernetes}\n",
    "signal": "name: x\nlaunch: {executor: slurm, timeout_min: 1, signal_delay_s: 120}\n",
    "reference": "name: x\nreference: asppunet_tabel3\n",
    "size_zero": "name: x\ngrid: {data.size: [[0, 32]]}\n",
    "loss_typo": "name: x\ngrid: {loss.name: [ce, cee]}\n",
    "bad_name": "name: my sweep\n",
    "bad_stride": "name: x\nbase: {model: {arch: deeplabv3, backbone: resnet18}}\ngrid: {model.output_stride: [7]}\n",
    "camvid_missing": "name: x\nbase: {data: {name: camvid, root: /no/such/camvid}}\n",
    "classes": "name: x\ngrid: {model.num_classes: [5]}\n",
    "arch_knob": "name: x\nbase: {model: {arch: unet, rates: [6, 12]}}\n",
    "unknown_arch": "name: x\ngrid: {model.arch: [aspp_unet, asppunet]}\n",
    "name_dotdot": "name: '..'\n",
    "name_dot": "name: '.'\n",
    "name_hidden": "name: .x\n",
    "name_long": "name: " + "x" * 5000 + "\n",
    "name_slash": "name: a/b\n",
    "bomb": "name: b\nbase:\n  a0: &a0 [l, l, l, l, l, l, l, l, l]\n"
    + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)),
    "self_ref": "name: x\nbase: &b {model: *b}\n",
    "deep": "name: x\nbase: " + "[" * 2000 + "]" * 2000 + "\n",
    "sbatch_key": 'name: x\nlaunch: {executor: slurm, sbatch: {"comment=x\\ntouch PWNED\\n#x": 1}}\n',
    "sbatch_value": 'name: x\nlaunch: {executor: slurm, sbatch: {comment: "x\\ntouch PWNED"}}\n',
    "sbatch_dashes": "name: x\nlaunch: {executor: slurm, sbatch: {--qos: high}}\n",
    "partition_newline": 'name: x\nlaunch: {executor: slurm, slurm_partition: "a\\nb"}\n',
    "mem_inf": "name: x\nlaunch: {executor: slurm, mem_gb: .inf}\n",
    "mem_huge": "name: x\nlaunch: {executor: slurm, mem_gb: 1e300}\n",
    "timeout_huge": "name: x\nlaunch: {executor: slurm, timeout_min: 100000000000000000000}\n",
    "timeout_float": "name: x\nlaunch: {executor: slurm, timeout_min: 1e20}\n",
    "cpus_zero": "name: x\nlaunch: {cpus_per_task: 0}\n",
    "parallel_zero": "name: x\nlaunch: {array_parallelism: 0}\n",
    "nodes_local": "name: x\nlaunch: {executor: local, nodes: 2}\n",
    "tasks_gpus": "name: x\nlaunch: {executor: slurm, gpus_per_node: 2, tasks_per_node: 3}\n",
    "launch_typo": "name: x\nlaunch: {exector: slurm}\n",
    "seed_huge": "name: x\nseeds: [18446744073709551616]\n",
    "seed_negative": "name: x\nseeds: [-1]\n",
    "seed_text": "name: x\nseeds: [one]\n",
    "lr_inf": "name: x\nbase: {optim: {lr: .inf}}\n",
    "width_huge": "name: x\nbase: {model: {width: 100000}}\n",
    "width_memory": "name: x\nbase: {model: {width: 3000}}\n",
    "count_memory": "name: x\nbase: {data: {count: 5000000}}\n",
    "size_huge": "name: x\nbase: {data: {size: [100000, 100000]}}\n",
    "size_tiny": "name: x\nbase: {data: {size: [1, 1]}}\n",
    "cuda": "name: x\nbase: {train: {device: cuda}}\n",
    "fp16": "name: x\nbase: {train: {amp: fp16, device: cpu}}\n",
    "exclude_all": "name: x\ngrid: {model.skip: [true, false]}\nexclude: [{model.arch: aspp_unet}]\n",
    "exclude_key": "name: x\nexclude: [{model.rate: [6]}]\n",
    "zip_key": "name: x\nzip: [{model.rate: [[6]]}]\n",
    "grid_not_list": "name: x\ngrid: {model.rates: 6}\n",
    "base_not_mapping": "name: x\nbase: [1, 2]\n",
    "base_not_field": "name: x\nbase: {model: {rate: [6]}}\n",
    "int_key": "name: x\n1: 2\n",
    "no_name": "grid: {model.skip: [true]}\n",
    "camvid_file_root": "name: x\nbase: {data: {name: camvid, root: /etc/passwd}}\n",
    "description_list": "name: x\ndescription: [a, b]\n",
    "reference_list": "name: x\nreference: [nosuch_table]\n",
    "empty": "",
    "config_ok": "model: {width: 4}\n",
}

# (id, argv, fragments the message must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    # train
    ("train-unknown-arch", _train("model.arch=deeplab"), ["unknown architecture 'deeplab'", "deeplabv3"]),
    ("train-empty-rates", _train("model.rates=[]"), ["model.rates", "at least one"]),
    ("train-zero-rate", _train("model.rates=[0,6]"), ["rates"]),
    ("train-size-zero", _train("data.size=[0,32]"), ["data.size.0=0", "greater than or equal to 1"]),
    ("train-size-length", _train("data.size=[32]"), ["data.size"]),
    ("train-classes-zero", _train("model.num_classes=0"), ["model.num_classes=0"]),
    ("train-classes-data", _train("model.num_classes=5"), ["dataset 'synthetic' has 6 classes"]),
    ("train-loss-typo", _train("loss.name=cee"), ["unknown loss 'cee'", "did you mean 'ce'"]),
    ("train-optim-typo", _train("optim.name=adamm"), ["optim.name='adamm'", "adam"]),
    ("train-lr-negative", _train("optim.lr=-1"), ["optim.lr=-1", "greater than 0"]),
    ("train-epochs-zero", _train("train.epochs=0"), ["train.epochs=0"]),
    ("train-skip-not-a-knob", _train("model.arch=deeplabv3", "model.skip=true"), ["has no knob 'skip'"]),
    ("train-not-a-field", _train("nosuch.key=1"), ["'nosuch.key' is not a config field"]),
    ("train-bad-yaml-value", _train("model.rates=[3,6"), ["not valid YAML"]),
    ("train-set-no-equals", ["train", "--out", "{W}/new_run", "--set", "justakey"], ["expected key=value"]),
    ("train-root-for-synthetic", _train("data.root=/x"), ["dataset 'synthetic' has no 'root'"]),
    (
        "train-camvid-missing",
        ["train", "--out", "{W}/new_run", *set_args("data.name=camvid", "data.root={W}/no_camvid")],
        ["no_camvid", "SegNet"],
    ),  # fmt: skip
    ("train-config-missing", ["train", "{W}/nope.yaml", "--out", "{W}/new_run"], ["nope.yaml", "not found"]),
    ("train-config-list", ["train", _spec("list"), "--out", "{W}/new_run"], ["expected a mapping"]),
    ("train-config-yaml", ["train", _spec("invalid_yaml"), "--out", "{W}/new_run"], ["not valid YAML"]),
    ("train-out-under-file", ["train", "--out", "{W}/afile/run", *set_args(*TINY)], ["afile is a regular file"]),
    (
        "train-other-config",
        ["train", "--out", "{W}/run", *set_args(*TINY, "train.epochs=1", "optim.lr=0.5")],
        ["optim.lr: 0.001 -> 0.5", "Nothing was changed"],
    ),  # fmt: skip
    ("train-class-weights-count", _train("loss.class_weights=[1,2]"), ["2 weights given", "6 classes"]),
    ("train-weights-not-taken", _train("loss.name=dice", "loss.class_weights=median_freq"), ["takes no class"]),
    ("train-amp", _train("train.amp=fp8"), ["train.amp='fp8'"]),
    ("train-context-typo", _train("model.context=aspx"), ["unknown context 'aspx'"]),
    ("train-backbone-typo", _train("model.arch=deeplabv3", "model.backbone=resnet19"), ["unknown backbone"]),
    ("train-batch-zero", _train("data.batch_size=0"), ["data.batch_size=0"]),
    (
        "train-image-pool",
        _train("model.arch=deeplabv3", "model.context=ppm", "model.image_pool=true"),
        ["context 'ppm' has no image-pooling branch"],
    ),  # fmt: skip
    ("train-fp16-on-cpu", _train("train.amp=fp16", "train.device=cpu"), ["fp16 needs CUDA"]),
    ("train-grad-clip", _train("train.grad_clip=0"), ["train.grad_clip=0"]),
    # sweep
    ("sweep-missing", ["sweep", "{W}/nope.yaml"], ["nope.yaml", "not found"]),
    ("sweep-invalid-yaml", ["sweep", _spec("invalid_yaml")], ["not valid YAML"]),
    ("sweep-typo-section", ["sweep", _spec("typo_section")], ["'grdi' is not a sweep field", "grid"]),
    ("sweep-not-a-field", ["sweep", _spec("not_a_field")], ["'model.rate' is not a config field"]),
    ("sweep-empty-axis", ["sweep", _spec("empty_axis")], ["has no values"]),
    ("sweep-zip-lengths", ["sweep", _spec("zip_lengths")], ["different lengths"]),
    ("sweep-seed-in-grid", ["sweep", _spec("seed_in_grid")], ["vary train.seed with 'seeds'"]),
    ("sweep-no-seeds", ["sweep", _spec("no_seeds")], ["seeds is empty"]),
    ("sweep-executor", ["sweep", _spec("executor")], ["launch.executor='kubernetes'"]),
    ("sweep-signal-delay", ["sweep", _spec("signal"), "--dry-run"], ["signal_delay_s=120", "timeout_min=1"]),
    ("sweep-reference", ["sweep", _spec("reference")], ["asppunet_tabel3", "asppunet_table3"]),
    ("sweep-size-zero", ["sweep", _spec("size_zero"), "--dry-run"], ["data.size.0=0"]),
    ("sweep-loss-typo", ["sweep", _spec("loss_typo"), "--dry-run"], ["cell 1", "unknown loss 'cee'"]),
    ("sweep-bad-name", ["sweep", _spec("bad_name")], ["my sweep", "is not a plain folder name"]),
    ("sweep-bad-stride", ["sweep", _spec("bad_stride"), "--dry-run"], ["output_stride"]),
    ("sweep-camvid-missing", ["sweep", _spec("camvid_missing"), "--results", "{W}/r"], ["/no/such/camvid"]),
    ("sweep-classes", ["sweep", _spec("classes"), "--dry-run"], ["has 6 classes"]),
    ("sweep-arch-knob", ["sweep", _spec("arch_knob"), "--dry-run"], ["'unet' has no knob 'rates'"]),
    ("sweep-unknown-arch", ["sweep", _spec("unknown_arch"), "--dry-run"], ["cell 1", "asppunet"]),
    ("sweep-results-file", ["sweep", _spec("ok"), "--results", "{W}/afile"], ["afile", "not a folder"]),
    ("sweep-results-under-file", ["sweep", _spec("ok"), "--results", "{W}/afile/r"], ["afile", "regular file"]),
    # status
    ("status-no-results", ["status", _spec("ok"), "--results", "{W}/no_results"], ["no_results", "no such folder"]),
    ("status-missing-sweep", ["status", "{W}/nope.yaml"], ["nope.yaml", "not found"]),
    # profile
    ("profile-unknown-arch", ["profile", "deeplab", "--input", "3x64x64"], ["unknown architecture 'deeplab'"]),
    ("profile-input-zero", ["profile", "unet", "--input", "3x0x64"], ["--input"]),
    ("profile-input-text", ["profile", "unet", "--input", "abc"], ["--input"]),
    ("profile-dtype", ["profile", "unet", "--input", "3x64x64", "--dtype", "fp8"], ["fp8"]),
    ("profile-metrics", ["profile", "unet", "--input", "3x64x64", "--metrics", "params,speed"], ["speed"]),
    ("profile-skip", ["profile", "deeplabv3", "--input", "3x64x64", *set_args("model.skip=true")], ["no knob 'skip'"]),
    ("profile-device", ["profile", "unet", "--input", "3x64x64", "--device", "tpu"], ["tpu"]),
    # evaluate
    ("evaluate-missing", ["evaluate", "{W}/nope.pt"], ["nope.pt", "not found"]),
    ("evaluate-empty", ["evaluate", "{W}/run_empty/checkpoint.pt"], ["not a readable checkpoint", "empty"]),
    ("evaluate-truncated", ["evaluate", "{W}/run_trunc/checkpoint.pt"], ["not a readable checkpoint"]),
    ("evaluate-code", ["evaluate", "{W}/run_evil/checkpoint.pt"], ["refused", "weights_only"]),
    ("evaluate-model-override", ["evaluate", "{W}/run/checkpoint.pt", *set_args("model.width=8")], ["data.*"]),
    ("evaluate-no-config", ["evaluate", "{W}/run_nocfg/checkpoint.pt"], ["config.yaml", "missing"]),
    ("evaluate-bad-config", ["evaluate", "{W}/run_badcfg/checkpoint.pt"], ["config.yaml", "not valid YAML"]),
    ("evaluate-other-config", ["evaluate", "{W}/run_othercfg/checkpoint.pt"], ["belongs to run"]),
    # collect
    ("collect-missing", ["collect", "{W}/no_results"], ["no_results", "not found"]),
    ("collect-suffix", ["collect", "{W}/results", "--out", "{W}/t.txt"], [".parquet or .csv"]),
    ("collect-empty", ["collect", "{W}/empty"], ["no finished runs"]),
    ("collect-out-under-file", ["collect", "{W}/results", "--out", "{W}/afile/t.parquet"], ["afile"]),
    # report
    ("report-missing", ["report", "{W}/no_results", "--out", "{W}/rep"], ["no_results"]),
    ("report-format", ["report", "{W}/results", "--out", "{W}/rep", "--format", "html"], ["allowed are md, tex"]),
    ("report-notes", ["report", "{W}/results", "--out", "{W}/rep", "--notes", "{W}/nope.md"], ["nope.md"]),
    ("report-baseline", ["report", "{W}/results", "--out", "{W}/rep", "--baseline", "arch=nosuch"], ["matches no"]),
    ("report-empty", ["report", "{W}/empty", "--out", "{W}/rep"], ["no finished runs"]),
    # regress
    ("regress-missing", ["regress", "{W}/nope.parquet", "{W}/table.parquet"], ["nope.parquet", "no such file"]),
    ("regress-bad-csv", ["regress", "{W}/garbage.csv", "{W}/table.parquet"], ["garbage.csv", "cannot be read"]),
    ("regress-bad-parquet", ["regress", "{W}/garbage.parquet", "{W}/table.parquet"], ["garbage.parquet"]),
    ("regress-empty-csv", ["regress", "{W}/empty.csv", "{W}/table.parquet"], ["empty.csv"]),
    ("regress-no-config", ["regress", "{W}/bare.csv", "{W}/table.parquet"], ["no config columns"]),
    ("regress-tolerance", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "-1"], ["[0, 100]"]),
    (
        "regress-nothing-common",
        ["regress", "{W}/table.parquet", "{W}/other.parquet"],
        ["no configuration in common", "optim.lr"],
    ),
]


# A --set value of 7 aliased levels of 10: 10^7 values once expanded.
SET_BOMB = (
    "model.rates=[&a [1,1,1,1,1,1,1,1,1,1], "
    + ", ".join(f"&b{i} [" + ",".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 10) + "]" for i in range(6))
    + "]"
)

# Hostile and careless input (each was a traceback, a hang, an acceptance or a loss before).
_S = ["sweep"]
CASES += [
    ("sweep-name-dotdot", ["sweep", _spec("name_dotdot"), "--executor", "inline"], ["'..'", "plain folder name"]),
    ("sweep-name-dot", ["sweep", _spec("name_dot")], ["'.'", "plain folder name"]),
    ("sweep-name-hidden-dry", ["sweep", _spec("name_hidden"), "--dry-run"], ["'.x'", "plain folder name"]),
    ("sweep-name-long-dry", ["sweep", _spec("name_long"), "--dry-run"], ["more characters", "plain folder name"]),
    ("sweep-name-slash", ["sweep", _spec("name_slash")], ["'a/b'", "plain folder name"]),
    ("status-name-dotdot", ["status", _spec("name_dotdot")], ["plain folder name"]),
    ("sweep-bomb-dry", ["sweep", _spec("bomb"), "--dry-run"], ["bomb.yaml", "expands to more than"]),
    ("sweep-bomb", ["sweep", _spec("bomb")], ["bomb.yaml", "expands to more than"]),
    ("status-bomb", ["status", _spec("bomb")], ["bomb.yaml", "expands to more than"]),
    ("report-sweep-bomb", ["report", "{W}/results", "--out", "{W}/rep", "--sweep", _spec("bomb")], ["expands"]),
    ("train-config-bomb", ["train", _spec("bomb"), "--out", "{W}/new_run"], ["bomb.yaml", "expands to more than"]),
    ("config-bomb", ["config", _spec("bomb")], ["bomb.yaml", "expands to more than"]),
    ("sweep-self-ref", ["sweep", _spec("self_ref"), "--dry-run"], ["self_ref.yaml", "refers to itself"]),
    ("sweep-deep", ["sweep", _spec("deep"), "--dry-run"], ["deep.yaml", "nests deeper"]),
    ("config-deep", ["config", _spec("deep")], ["deep.yaml", "nests deeper"]),
    ("sweep-utf16", ["sweep", _spec("utf16"), "--dry-run"], ["utf16.yaml", "UTF-16", "UTF-8"]),
    ("sweep-binary", ["sweep", _spec("binary")], ["binary.yaml", "binary", "UTF-8"]),
    ("sweep-latin1", ["sweep", _spec("latin1")], ["latin1.yaml", "not UTF-8", "offset"]),
    ("sweep-folder", ["sweep", _spec("folder")], ["folder.yaml", "is a folder"]),
    ("status-utf16", ["status", _spec("utf16")], ["utf16.yaml", "UTF-16"]),
    ("status-folder", ["status", _spec("folder")], ["is a folder"]),
    ("train-config-utf16", ["train", _spec("utf16"), "--out", "{W}/new_run"], ["utf16.yaml", "UTF-16"]),
    ("train-config-binary", ["train", _spec("binary"), "--out", "{W}/new_run"], ["binary.yaml", "binary"]),
    ("train-config-folder", ["train", _spec("folder"), "--out", "{W}/new_run"], ["is a folder"]),
    ("config-utf16", ["config", _spec("utf16")], ["utf16.yaml", "UTF-16"]),
    ("config-binary", ["config", _spec("binary")], ["binary.yaml", "binary"]),
    ("config-latin1", ["config", _spec("latin1")], ["latin1.yaml", "not UTF-8"]),
    ("config-missing", ["config", "{W}/nope.yaml"], ["nope.yaml", "not found"]),
    (
        "report-notes-utf16",
        ["report", "{W}/results", "--out", "{W}/rep", "--notes", "{W}/notes_utf16.md"],
        ["notes_utf16.md", "UTF-16"],
    ),
    (
        "report-notes-binary",
        ["report", "{W}/results", "--out", "{W}/rep", "--notes", "{W}/notes_binary.md"],
        ["notes_binary.md", "binary"],
    ),
    ("report-notes-folder", ["report", "{W}/results", "--out", "{W}/rep", "--notes", "{W}/specs"], ["is a folder"]),
    ("report-sweep-utf16", ["report", "{W}/results", "--out", "{W}/rep", "--sweep", _spec("utf16")], ["UTF-16"]),
    ("report-sweep-binary", ["report", "{W}/results", "--out", "{W}/rep", "--sweep", _spec("binary")], ["binary"]),
    ("report-sweep-missing", ["report", "{W}/results", "--out", "{W}/rep", "--sweep", "{W}/nope.yaml"], ["nope.yaml"]),
    ("sweep-sbatch-key", ["sweep", _spec("sbatch_key")], ["launch.sbatch", "not an sbatch option name"]),
    ("sweep-sbatch-key-dry", ["sweep", _spec("sbatch_key"), "--dry-run"], ["launch.sbatch", "launch.setup"]),
    ("sweep-sbatch-value", ["sweep", _spec("sbatch_value")], ["launch.sbatch", "one line"]),
    ("sweep-sbatch-value-dry", ["sweep", _spec("sbatch_value"), "--dry-run"], ["comment=", "one line"]),
    ("sweep-sbatch-dashes", ["sweep", _spec("sbatch_dashes"), "--dry-run"], ["'--qos'", "option name"]),
    ("sweep-partition-newline", ["sweep", _spec("partition_newline"), "--dry-run"], ["launch.slurm_partition"]),
    ("sweep-mem-inf", ["sweep", _spec("mem_inf"), "--dry-run"], ["launch.mem_gb=inf", "finite"]),
    ("sweep-mem-huge", ["sweep", _spec("mem_huge"), "--dry-run"], ["launch.mem_gb", "less than or equal"]),
    ("sweep-timeout-huge", ["sweep", _spec("timeout_huge"), "--dry-run"], ["launch.timeout_min", "less than"]),
    ("sweep-timeout-float", ["sweep", _spec("timeout_float"), "--dry-run"], ["launch.timeout_min"]),
    ("sweep-cpus-zero", ["sweep", _spec("cpus_zero"), "--dry-run"], ["launch.cpus_per_task=0"]),
    ("sweep-parallel-zero", ["sweep", _spec("parallel_zero"), "--dry-run"], ["launch.array_parallelism=0"]),
    ("sweep-nodes-local", ["sweep", _spec("nodes_local"), "--dry-run"], ["launch.nodes=2", "only Slurm"]),
    ("sweep-tasks-gpus", ["sweep", _spec("tasks_gpus"), "--dry-run"], ["tasks_per_node=3", "gpus_per_node=2"]),
    ("sweep-launch-typo", ["sweep", _spec("launch_typo"), "--dry-run"], ["'launch.exector'", "executor"]),
    ("sweep-seed-huge", ["sweep", _spec("seed_huge"), "--dry-run"], ["seeds.0", "less than or equal"]),
    ("sweep-seed-negative", ["sweep", _spec("seed_negative"), "--dry-run"], ["seeds.0", "greater than or equal"]),
    ("sweep-seed-text", ["sweep", _spec("seed_text"), "--dry-run"], ["seeds.0", "integer"]),
    ("sweep-lr-inf", ["sweep", _spec("lr_inf"), "--dry-run"], ["optim.lr=inf", "finite"]),
    ("sweep-width-huge", ["sweep", _spec("width_huge"), "--dry-run"], ["model.width=100000", "less than or equal"]),
    ("sweep-width-memory", ["sweep", _spec("width_memory"), "--dry-run"], ["GiB", "more than this machine's"]),
    ("sweep-width-memory-submit", ["sweep", _spec("width_memory")], ["GiB", "nothing was submitted"]),
    ("sweep-count-memory", ["sweep", _spec("count_memory"), "--dry-run"], ["decoded data", "data.count"]),
    ("sweep-size-huge", ["sweep", _spec("size_huge"), "--dry-run"], ["data.size.0=100000"]),
    ("sweep-size-tiny", ["sweep", _spec("size_tiny"), "--dry-run"], ["data.size=[1, 1]", "at least 16x16"]),
    ("sweep-cuda-dry", ["sweep", _spec("cuda"), "--dry-run"], ["train.device=cuda", "no CUDA device"]),
    ("sweep-fp16-dry", ["sweep", _spec("fp16"), "--dry-run"], ["train.amp=fp16", "needs CUDA"]),
    ("sweep-exclude-all", ["sweep", _spec("exclude_all"), "--dry-run"], ["removed by 'exclude'"]),
    ("sweep-exclude-key", ["sweep", _spec("exclude_key"), "--dry-run"], ["exclude key 'model.rate'", "model.rates"]),
    ("sweep-zip-key", ["sweep", _spec("zip_key"), "--dry-run"], ["zip key 'model.rate'"]),
    ("sweep-grid-not-list", ["sweep", _spec("grid_not_list"), "--dry-run"], ["grid.model.rates"]),
    ("sweep-base-not-mapping", ["sweep", _spec("base_not_mapping"), "--dry-run"], ["base"]),
    ("sweep-base-not-field", ["sweep", _spec("base_not_field"), "--dry-run"], ["'model.rate' is not a config field"]),
    ("sweep-int-key", ["sweep", _spec("int_key"), "--dry-run"], ["int_key.yaml", "is not text"]),
    ("sweep-no-name", ["sweep", _spec("no_name"), "--dry-run"], ["name", "Field required"]),
    ("sweep-empty-file", ["sweep", _spec("empty"), "--dry-run"], ["empty.yaml", "name"]),
    ("sweep-camvid-file-root", ["sweep", _spec("camvid_file_root")], ["/etc/passwd", "is a file, not a folder"]),
    ("sweep-description-list", ["sweep", _spec("description_list"), "--dry-run"], ["description"]),
    ("sweep-reference-list", ["sweep", _spec("reference_list"), "--dry-run"], ["nosuch_table", "allowed"]),
    (
        "sweep-results-under-file-dry",
        ["sweep", _spec("ok"), "--results", "{W}/afile/r", "--dry-run"],
        ["afile", "regular file"],
    ),
    # train: values that cannot work, refused before anything is allocated or written
    ("train-seed-huge", _train("train.seed=18446744073709551616"), ["train.seed", "less than or equal"]),
    ("train-seed-negative", _train("train.seed=-3"), ["train.seed=-3"]),
    ("train-width-huge", _train("model.width=100000"), ["model.width=100000"]),
    ("train-width-memory", _train("model.width=3000"), ["GiB", "more than this machine's"]),
    ("train-count-huge", _train("data.count=1000000000"), ["data.count=1000000000"]),
    ("train-count-memory", _train("data.count=5000000"), ["decoded data", "more than this machine's"]),
    ("train-size-huge", _train("data.size=[100000,100000]"), ["data.size.0=100000"]),
    ("train-size-tiny", _train("data.size=[1,1]"), ["at least 16x16"]),
    ("train-size-memory", _train("data.size=[8000,8000]", "data.batch_size=64", "data.count=1"), ["activations"]),
    ("train-lr-inf", _train("optim.lr=.inf"), ["optim.lr=inf", "finite"]),
    ("train-lr-nan", _train("optim.lr=.nan"), ["optim.lr=nan", "finite"]),
    ("train-wd-inf", _train("optim.weight_decay=.inf"), ["optim.weight_decay=inf"]),
    ("train-clip-inf", _train("train.grad_clip=.inf"), ["train.grad_clip=inf"]),
    ("train-rotate-huge", _train("data.augment.rotate=1e9"), ["data.augment.rotate"]),
    ("train-scale-nan", _train("data.augment.scale=[.nan,1]"), ["data.augment.scale"]),
    ("train-cuda", _train("train.device=cuda"), ["train.device=cuda", "no CUDA device"]),
    (
        "train-crop-too-small",
        ["train", "--out", "{W}/new_run", *set_args("model.arch=icnet", "data.size=[32,32]", "data.crop=[2,2]")],
        ["cannot run on a 2x2 input"],
    ),
    ("train-epochs-huge", _train("train.epochs=10000000"), ["train.epochs"]),
    ("train-workers-huge", _train("data.num_workers=100000"), ["data.num_workers"]),
    ("train-batch-huge", _train("data.batch_size=1000000"), ["data.batch_size"]),
    (
        "train-set-bomb",
        _train(SET_BOMB),
        ["expands to more than"],
    ),
    ("train-set-deep", _train("model.rates=" + "[" * 200 + "]" * 200), ["nests deeper"]),
    ("train-set-huge-int", _train("train.seed=" + "9" * 5000), ["cannot be read"]),
    (
        "train-root-file",
        ["train", "--out", "{W}/new_run", *set_args("data.name=camvid", "data.root=/etc/passwd")],
        ["/etc/passwd", "is a file"],
    ),
    ("train-out-is-file", ["train", "--out", "{W}/afile", *set_args(*TINY)], ["afile", "not a folder"]),
    # profile
    ("profile-min-run-time-inf", ["profile", "unet", "--input", "3x32x32", "--min-run-time", "inf"], ["finite"]),
    ("profile-min-run-time-nan", ["profile", "unet", "--input", "3x32x32", "--min-run-time", "nan"], ["finite"]),
    ("profile-min-run-time-neg", ["profile", "unet", "--input", "3x32x32", "--min-run-time", "-1"], ["(0, 600]"]),
    ("profile-min-run-time-zero", ["profile", "unet", "--input", "3x32x32", "--min-run-time", "0"], ["(0, 600]"]),
    ("profile-min-run-time-text", ["profile", "unet", "--input", "3x32x32", "--min-run-time", "long"], ["'long'"]),
    ("profile-batch-zero", ["profile", "unet", "--input", "3x32x32", "--batch", "0"], ["--batch", "1 to 4096"]),
    ("profile-batch-huge", ["profile", "unet", "--input", "3x32x32", "--batch", "99999999"], ["--batch"]),
    ("profile-threads-zero", ["profile", "unet", "--input", "3x32x32", "--threads", "0"], ["--threads"]),
    ("profile-threads-text", ["profile", "unet", "--input", "3x32x32", "--threads", "many"], ["'many'"]),
    ("profile-input-huge", ["profile", "unet", "--input", "3x100000x100000"], ["--input"]),
    ("profile-input-negative", ["profile", "unet", "--input", "3x-4x32"], ["--input"]),
    ("profile-width-huge", ["profile", "unet", "--input", "3x32x32", *set_args("model.width=100000")], ["model.width"]),
    (
        "profile-set-bomb",
        [
            "profile",
            "unet",
            "--input",
            "3x32x32",
            *set_args(SET_BOMB),
        ],
        ["expands to more than"],
    ),
    # evaluate
    ("evaluate-folder", ["evaluate", "{W}/run"], ["run"]),
    ("evaluate-yaml", ["evaluate", _spec("ok")], ["config.yaml", "missing beside the checkpoint"]),
    ("evaluate-set-not-data", ["evaluate", "{W}/run/checkpoint.pt", *set_args("train.epochs=3")], ["data.*"]),
    ("evaluate-set-bad-split", ["evaluate", "{W}/run/checkpoint.pt", *set_args("data.split=nosuch")], ["nosuch"]),
    # collect / report with damaged results
    ("collect-file", ["collect", "{W}/afile"], ["afile"]),
    ("collect-nothing-finished", ["collect", "{W}/huge_results"], ["no finished runs"]),
    ("report-table-text", ["report", "{W}/table.txt", "--out", "{W}/rep"], ["table.txt"]),
    ("report-miou-inf", ["report", "{W}/miou_inf.parquet", "--out", "{W}/rep"], ["miou", "inf"]),
    ("report-miou-negative", ["report", "{W}/miou_neg.parquet", "--out", "{W}/rep"], ["miou", "-5.0"]),
    ("report-miou-text", ["report", "{W}/miou_text.csv", "--out", "{W}/rep"], ["miou", "'high'"]),
    ("report-format-empty", ["report", "{W}/results", "--out", "{W}/rep", "--format", ","], ["--format"]),
    ("report-out-under-file", ["report", "{W}/results", "--out", "{W}/afile/rep"], ["afile"]),
    # regress: tolerances and tables
    ("regress-tol-nan", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "nan"], ["finite"]),
    ("regress-tol-inf", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "inf"], ["finite"]),
    ("regress-tol-text", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "one"], ["'one'"]),
    ("regress-speed-tol-neg", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--speed-tol", "-1"], ["[0, 100]"]),
    ("regress-speed-tol-nan", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--speed-tol", "nan"], ["finite"]),
    ("regress-alpha-zero", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--alpha", "0"], ["(0, 1)"]),
    ("regress-alpha-one", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--alpha", "1"], ["(0, 1)"]),
    ("regress-alpha-nan", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--alpha", "nan"], ["(0, 1)"]),
    ("regress-miou-inf", ["regress", "{W}/miou_inf.parquet", "{W}/table.parquet"], ["miou_inf.parquet", "row 0"]),
    ("regress-miou-negative", ["regress", "{W}/table.parquet", "{W}/miou_neg.parquet"], ["miou_neg", "-5.0"]),
    ("regress-miou-points", ["regress", "{W}/miou_points.parquet", "{W}/table.parquet"], ["57.3", "fraction"]),
    ("regress-miou-nan", ["regress", "{W}/miou_nan.parquet", "{W}/table.parquet"], ["miou_nan", "nan"]),
    ("regress-miou-text", ["regress", "{W}/miou_text.csv", "{W}/table.parquet"], ["miou_text.csv", "'high'"]),
    ("regress-latency-text", ["regress", "{W}/latency_text.csv", "{W}/table.parquet"], ["latency_ms_p50", "'fast'"]),
    ("regress-table-txt", ["regress", "{W}/table.txt", "{W}/table.parquet"], ["table.txt", ".parquet or .csv"]),
    ("regress-folder-empty", ["regress", "{W}/empty", "{W}/table.parquet"], ["empty"]),
    # plan
    ("plan-missing", ["plan", "{W}/nope.parquet"], ["nope.parquet"]),
    ("plan-delta-nan", ["plan", "{W}/table.parquet", "--delta", "nan"], ["--delta", "finite"]),
    ("plan-delta-tiny", ["plan", "{W}/table.parquet", "--delta", "1e-300"], ["--delta", "[0.01, 100]"]),
    ("plan-delta-zero", ["plan", "{W}/table.parquet", "--delta", "0"], ["--delta"]),
    ("plan-delta-negative", ["plan", "{W}/table.parquet", "--delta", "-2"], ["--delta"]),
    ("plan-delta-inf", ["plan", "{W}/table.parquet", "--delta", "inf"], ["--delta"]),
    ("plan-difference-alias-nan", ["plan", "{W}/table.parquet", "--difference", "nan"], ["--difference"]),
    ("plan-alpha-zero", ["plan", "{W}/table.parquet", "--alpha", "0"], ["--alpha"]),
    ("plan-power-one", ["plan", "{W}/table.parquet", "--power", "1"], ["--power"]),
    ("plan-power-text", ["plan", "{W}/table.parquet", "--power", "high"], ["'high'"]),
    ("plan-miou-text", ["plan", "{W}/miou_text.csv"], ["miou_text.csv", "'high'"]),
    ("plan-miou-inf", ["plan", "{W}/miou_inf.parquet"], ["miou_inf.parquet", "inf"]),
    ("plan-garbage", ["plan", "{W}/garbage.parquet"], ["garbage.parquet"]),
    ("plan-one-configuration", ["plan", "{W}/table.parquet", "--baseline", "arch=nosuch"], ["holds only one"]),
    # models / config
    ("config-not-a-field", ["config", *set_args("model.rate=[6]")], ["'model.rate' is not a config field"]),
]


def _invalid_value(what: str) -> str | None:
    """A value the type described by `config --fields` cannot take."""
    if what.startswith("true or false"):
        return "maybe"
    if what.startswith(("integer", "positive integer")):
        return "many"
    if what.startswith("number"):
        return "fast"
    if what.startswith("one of"):
        return "no_such_choice"
    if what.startswith("a list of"):
        return "{a: 1}"
    return None


def _generated() -> list[tuple[str, list[str], list[str]]]:
    """One wrong-typed value per config key (from `config --fields`'s own descriptions), through
    `config --set`, `train --set` and `profile --set`: every key names itself and what it takes."""
    from bench.configure.listings import field_rows

    out = []
    for row in field_rows():
        key, bad = row["key"], _invalid_value(row["type"])
        if bad is None or key in ("model.arch",):
            continue
        # a context option is set with the variant that takes it (its example names the variant)
        given = [s for s in shlex.split(row["example"].removeprefix("--set ")) if s.startswith("model.context=")]
        given = given if key.startswith("model.context_options.") else []
        arch, sets = ("aspp_unet" if given else "unet"), [*given, f"{key}={bad}"]
        out.append((f"config-type-{key}{'-' + given[0] if given else ''}", ["config", *set_args(*sets)], [key]))
        out.append((f"train-type-{key}{'-' + given[0] if given else ''}",
                    ["train", "--out", "{W}/new_run", *set_args(*TINY, *sets)], [key]))  # fmt: skip
        if key.startswith(("model.", "profile.")):
            out.append(
                (
                    f"profile-type-{key}{'-' + given[0] if given else ''}",
                    ["profile", arch, "--input", "3x32x32", *set_args(*sets)],
                    [key],
                )  # fmt: skip
            )
    return out


CASES += _generated()

# Legitimate input beside the bad: exit 0, and the tree is unchanged all the same.
GOOD: list[tuple[str, list[str], list[str]]] = [
    ("config-defaults", ["config"], ["model:"]),
    ("config-fields", ["config", "--fields"], ["model.rates"]),
    ("config-json", ["config", "--json", *set_args("model.arch=unet")], ['"arch": "unet"']),
    ("config-file", ["config", _spec("config_ok")], ["width: 4"]),
    ("config-bounded-max", ["config", *set_args("train.seed=4294967295", "data.size=[16384,16384]")], ["4294967295"]),
    ("models", ["models"], ["aspp_unet"]),
    ("models-pattern", ["models", "deeplab*", "--json"], ["deeplabv3plus"]),
    ("sweep-dry-run", ["sweep", _spec("ok"), "--dry-run"], ["would submit 1 cell(s)", "nothing was written"]),
    ("sweep-dry-run-slurm-cuda", ["sweep", _spec("cuda"), "--dry-run", "--executor", "slurm"], ["#SBATCH"]),
    ("sweep-dry-run-sbatch-ok", ["sweep", _spec("ok"), "--dry-run", "--executor", "slurm"], ["#SBATCH"]),
    ("status-ok", ["status", _spec("ok"), "--results", "{W}/empty"], ["1 missing"]),
    ("status-json", ["status", _spec("ok"), "--results", "{W}/empty", "--json"], ['"missing": 1']),
    ("regress-self", ["regress", "{W}/table.parquet", "{W}/table.parquet"], ["PASS"]),
    ("regress-self-json", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--json"], ['"passed": true']),
    ("regress-tol-zero", ["regress", "{W}/table.parquet", "{W}/table.parquet", "--miou-tol", "0"], ["PASS"]),
    ("plan-ok", ["plan", "{W}/two.parquet", "--delta", "2"], ["alpha 0.05"]),
    ("profile-params", ["profile", "unet", "--input", "3x32x32", "--metrics", "params", "--json"], ["params"]),
    ("evaluate-json", ["evaluate", "{W}/run/checkpoint.pt", "--json"], ["miou"]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree every case reads and none may change."""
    import pandas as pd

    from bench.cli import main

    w = tmp_path_factory.mktemp("world")
    assert main(["train", "--out", str(w / "results" / "run"), *set_args(*TINY, "train.epochs=1")]) == 0
    shutil.copytree(w / "results" / "run", w / "run")
    assert main(["collect", str(w / "results"), "--out", str(w / "table.parquet")]) == 0
    for name, content in (("run_empty", b""), ("run_trunc", (w / "run" / "checkpoint.pt").read_bytes()[:4000])):
        shutil.copytree(w / "run", w / name)
        (w / name / "checkpoint.pt").write_bytes(content)
    shutil.copytree(w / "run", w / "run_evil")
    state = torch.load(w / "run" / "checkpoint.pt", weights_only=True)
    state["evil"] = _Payload(w / "PWNED")
    torch.save(state, w / "run_evil" / "checkpoint.pt")
    (w / "run_nocfg").mkdir()
    shutil.copy(w / "run" / "checkpoint.pt", w / "run_nocfg" / "checkpoint.pt")
    shutil.copytree(w / "run", w / "run_badcfg")
    (w / "run_badcfg" / "config.yaml").write_text("model: [unclosed\n")
    shutil.copytree(w / "run", w / "run_othercfg")
    cfg = (w / "run" / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.002")
    (w / "run_othercfg" / "config.yaml").write_text(cfg)
    (w / "afile").write_text("a regular file\n")
    (w / "empty").mkdir()
    (w / "garbage.csv").write_bytes(b'\x00\xff\xfe garbage \x00\n\x01,\x02\n"unclosed')
    (w / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (w / "empty.csv").write_text("")
    pd.DataFrame({"run_id": ["x"], "miou": [0.1], "status": ["done"]}).to_csv(w / "bare.csv", index=False)
    other = pd.read_parquet(w / "table.parquet")
    other["optim.lr"] = 0.5
    other.to_parquet(w / "other.parquet")
    (w / "specs").mkdir()
    for name, text in SPECS.items():
        (w / "specs" / f"{name}.yaml").write_text(text if name in ("bomb", "deep") else textwrap.dedent(text))
    (w / "specs" / "utf16.yaml").write_bytes("name: x\n".encode("utf-16"))
    (w / "specs" / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (w / "specs" / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (w / "specs" / "folder.yaml").mkdir()
    (w / "notes_utf16.md").write_bytes("# notes\n".encode("utf-16"))
    (w / "notes_binary.md").write_bytes(b"\x00\x01\x02\x03")
    base = pd.read_parquet(w / "table.parquet")
    for name, value in (("inf", float("inf")), ("neg", -5.0), ("points", 57.3), ("nan", float("nan"))):
        t = base.copy()
        t["miou"] = value
        t.to_parquet(w / f"miou_{name}.parquet")
    t = base.copy()
    t["miou"] = t["miou"].astype(object)
    t.loc[0, "miou"] = "high"
    t.to_csv(w / "miou_text.csv", index=False)
    t = base.copy()
    t["latency_ms_p50"] = "fast"
    t.to_csv(w / "latency_text.csv", index=False)
    (w / "table.txt").write_text("not a table")
    pd.concat([base, other]).to_parquet(w / "two.parquet")
    (w / "huge_results").mkdir()
    return w


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.target, "pwned"))


COMMANDS = {
    "config",
    "models",
    "train",
    "sweep",
    "status",
    "profile",
    "evaluate",
    "collect",
    "report",
    "regress",
    "plan",
}


def test_there_are_at_least_250_distinct_cases_over_every_command() -> None:
    cases = CASES + GOOD
    assert len({c[0] for c in cases}) == len(cases) >= 250, len(cases)
    assert len({tuple(c[1]) for c in cases}) == len(cases)
    assert {c[1][0] for c in CASES} >= COMMANDS - {"models"}  # `models` takes no input that can be bad
    assert {c[1][0] for c in cases} == COMMANDS


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_legitimate_input_exits_0_and_writes_nothing(cli, world: Path, monkeypatch, argv, fragments) -> None:
    monkeypatch.chdir(world)
    before = tree_hashes(world, dirs=True)
    code, out, err = cli(*[a.replace("{W}", str(world)) for a in argv])
    assert code == 0, (code, out, err)
    assert "Traceback" not in err + out
    for f in fragments:
        assert f in out, (f, out[-2000:])
    assert tree_hashes(world, dirs=True) == before, "a legitimate read-only command changed the tree"


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    cli, world: Path, monkeypatch, argv: list[str], fragments: list[str]
) -> None:
    monkeypatch.chdir(world)  # a relative default (results/<name>) would land here
    before = tree_hashes(world, dirs=True)
    code, out, err = cli(*[a.replace("{W}", str(world)) for a in argv])
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out
    assert err.startswith("aspp-bench: error:") or err.startswith("usage:"), err
    for f in fragments:
        assert f.replace("{W}", str(world)) in err, (f, err)
    assert tree_hashes(world, dirs=True) == before, "a bad input changed the tree"
    assert not (world / "PWNED").exists()
