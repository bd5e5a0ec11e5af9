#!/bin/sh
# Issue 19: `satdifuser reproduce` end to end on the tiny GEO-Bench task folders of tests/data/geobench
# with the tiny pipeline: the row of the results table, the same features and metrics as the
# extract / train / eval commands typed by hand, a rerun that skips finished stages, a resumed
# extraction, shards, a changed setting refused; every preset of configs/tasks loads, and the four
# original tasks' settings equal the original's configs (../ref/SatDiFuser, when present).
# Usage: sh tests/cli_reproduce.sh ./satdifuser   (from the repository root); prints RESULT <pass> <fail>.
BIN=$1
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
ROOT=$(pwd)
GB="$ROOT/tests/data/geobench"
T=$(mktemp -d /tmp/satdifuser_cli_reproduce.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli_reproduce: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
S="$BIN --threads 1"
MODEL="$ROOT/tests/data/tiny_pipeline"

# a GEO-Bench root holding the tiny tasks where the presets look for them
mkdir -p "$T/gb/classification_v1.0" "$T/gb/segmentation_v1.0"
ln -s "$GB/m-tiny-cls" "$T/gb/classification_v1.0/m-tiny-cls"
ln -s "$GB/m-tiny-seg" "$T/gb/segmentation_v1.0/m-tiny-seg"
cat > "$T/cls.json" <<'EOF'
{"task": "m-tiny-cls", "folder": "classification_v1.0/m-tiny-cls", "type": "cls", "num_classes": 3,
 "bands": "04 - Red,03 - Green,02 - Blue", "scale": "4095", "size": 64, "prompt": "A satellite image",
 "metric": "accuracy",
 "train": {"batch_size": 4, "val_batch_size": 4, "epochs": 3, "warmup_epochs": 1, "lr": 0.01, "min_lr": 1e-05,
           "weight_decay": 0, "eval_every": 0, "patience": 10, "seed": 42},
 "head": {"projection_dim": 32, "num_norm_groups": 8}}
EOF
sed 's/m-tiny-cls/m-tiny-seg/g; s/classification_v1.0/segmentation_v1.0/; s/"cls"/"seg"/; s/"num_classes": 3/"num_classes": 4/;
     s/04 - Red,03 - Green,02 - Blue/Red,Green,Blue/; s/"4095"/"clip"/; s/accuracy/mIoU/;
     s/"num_norm_groups": 8}/"num_norm_groups": 8, "channels": 32}/' "$T/cls.json" > "$T/seg.json"
R="$S reproduce --geobench $T/gb --model $MODEL"

# 1. usage
$S reproduce --help > "$T/h" 2>&1
check '[ $? -eq 0 ] && grep -q "^usage: satdifuser reproduce" "$T/h" && grep -q -- "--dry-run" "$T/h"' "--help: $(head -3 "$T/h")"
$S reproduce --task m-eurosat > "$T/u" 2>&1
check '[ $? -eq 2 ] && grep -q "are required" "$T/u"' "missing options: $(head -3 "$T/u")"
$R --task m-nothing --out "$T/x" > "$T/u" 2>&1
check '[ $? -eq 2 ] && grep -q "no preset m-nothing.json" "$T/u" && grep -q "m-eurosat" "$T/u"' "unknown task lists the presets: $(cat "$T/u")"
$R --task "$T/cls.json" --out "$T/x" --fuser xy > "$T/u" 2>&1
check '[ $? -eq 2 ] && grep -q "fuser .xy." "$T/u" && [ ! -e "$T/x" ]' "bad --fuser: $(cat "$T/u")"

# 2. every preset loads; the dry run prints the settings and the commands, writes nothing
for p in "$ROOT"/configs/tasks/*.json; do
  t=$(basename "$p" .json)
  $R --task "$t" --fuser moe --out "$T/dry_$t" --dry-run > "$T/d_$t" 2>&1
  check '[ $? -eq 0 ] && grep -q "^satdifuser train .* --fuser moe " "$T/d_$t" && [ ! -e "$T/dry_$t" ]' "preset $t: $(head -5 "$T/d_$t")"
done
# the original's four tasks against their configs (configs/*_exp.yaml, configs/tasks/*.yaml)
REF=""
for d in "$ROOT/../ref/SatDiFuser" /work/ref/SatDiFuser; do [ -f "$d/configs/eurosat_exp.yaml" ] && REF=$d && break; done
yaml() { sed -n "s/^$2: *\([^ #]*\).*/\1/p" "$1" | tr -d "'\""; }
if [ -n "$REF" ]; then
  for pair in m-eurosat:eurosat:meurosat m-bigearthnet:ben:mbigearthnet m-chesapeake:chesa:mchesapeake m-nz-cattle:nzcattle:mnz_cattle; do
    t=${pair%%:*}; rest=${pair#*:}; e="$REF/configs/${rest%%:*}_exp.yaml"; y="$REF/configs/tasks/${rest#*:}.yaml"
    tr=$(grep "^satdifuser train" "$T/d_$t"); ex=$(grep "^satdifuser extract" "$T/d_$t")
    ev=$(yaml "$e" eval_every_n_steps); [ "$ev" = null ] && ev=0
    prompt=$(sed -n 's/^prompt: *"\(.*\)"/\1/p' "$y")
    want="--batch-size $(yaml "$e" batch_size) --val-batch-size $(yaml "$e" val_batch_size) --epochs $(yaml "$e" max_train_epochs) --warmup-epochs $(yaml "$e" warmup_epochs)"
    check 'echo "$tr" | grep -q -- "$want"' "$t: train options '$tr' lack '$want' ($e)"
    check 'echo "$tr" | grep -q -- "--patience $(yaml "$e" early_stopping_patience) --seed $(yaml "$e" seed)" &&
           echo "$tr" | grep -q -- "--eval-every $ev " && echo "$tr" | grep -q -- "--num-classes $(yaml "$y" num_classes) "' "$t: patience/seed/eval-every/classes: $tr"
    check 'awk -v a="$(yaml "$e" lr)" -v b="$(echo "$tr" | sed "s/.*--lr \([^ ]*\).*/\1/")" -v c="$(yaml "$e" op_weight_decay)" \
             -v d="$(echo "$tr" | sed "s/.*--weight-decay \([^ ]*\).*/\1/")" -v e1="$(yaml "$e" min_lr)" \
             -v f="$(echo "$tr" | sed "s/.*--min-lr \([^ ]*\).*/\1/")" "BEGIN { exit !(a == b && c == d && e1 == f) }"' "$t: lr / weight decay / min lr: $tr"
    check 'echo "$ex" | grep -q -- "--size $(yaml "$y" img_size) --prompt \"$prompt\""' "$t: extract size/prompt: $ex"
  done
else
  echo "SKIP cli_reproduce: ../ref/SatDiFuser not found (preset settings against the original's configs)"
fi

# DiffusionSat's release layout: ROOT/resolution<size>/ with the UNet in checkpoint-150000/unet (run.py:164-168)
mkdir -p "$T/ds/resolution64/checkpoint-150000"
for d in "$MODEL"/*; do ln -s "$d" "$T/ds/resolution64/$(basename "$d")"; done
ln -s "$MODEL/unet" "$T/ds/resolution64/checkpoint-150000/unet"
$S reproduce --geobench "$T/gb" --model "$T/ds" --task "$T/cls.json" --out "$T/dsr" --dry-run > "$T/ds1" 2>&1
check '[ $? -eq 0 ] && grep -q "^satdifuser extract --model $T/ds/resolution64 .* --unet $T/ds/resolution64/checkpoint-150000/unet" "$T/ds1"' \
  "DiffusionSat root resolved to resolution64 + checkpoint-150000/unet: $(grep extract "$T/ds1")"

# 3. end to end: the row, the same features and metrics as the commands by hand
$R --task "$T/cls.json" --fuser moe --out "$T/run" > "$T/r1" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/run/features" | grep -c safetensors) -eq 8 ]' "reproduce m-tiny-cls: $(tail -5 "$T/r1")"
check '[ $(wc -l < "$T/run/results.csv") -eq 2 ] && grep -q "^m-tiny-cls,moe,default,accuracy,[0-9.]*,42,[0-9.]*,20[0-9-]*T[0-9:]*Z,$T/run$" "$T/run/results.csv" &&
       grep -q "^| m-tiny-cls | moe | default | accuracy | [0-9.]* | 42 |" "$T/run/results.md"' "results row: $(cat "$T/run/results.csv" "$T/run/results.md")"
acc=$(sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/' "$T/run/metrics_test.json")
row=$(tail -1 "$T/run/results.csv" | cut -d, -f5)
check 'awk -v a="$acc" -v r="$row" "BEGIN { d = 100 * a - r; exit !(d < 1e-3 && d > -1e-3) }"' "row value $row is not 100 x accuracy $acc"
X="$S extract --model $MODEL --quiet --size 64"
$X --input "$GB/m-tiny-cls" --out "$T/hand/features" --bands "04 - Red,03 - Green,02 - Blue" --scale 4095 > "$T/h1" 2>&1
$S geobench export "$GB/m-tiny-cls" --out "$T/hand/export" --quiet > "$T/h2" 2>&1
$S train --features "$T/hand/features" --labels "$T/hand/export/labels.csv" --task cls --fuser moe --out "$T/hand/train" \
  --num-classes 3 --ignore-value -100 --batch-size 4 --epochs 3 --warmup-epochs 1 --lr 0.01 --min-lr 1e-5 --eval-every 0 \
  --projection-dim 32 --num-norm-groups 8 --quiet > "$T/h3" 2>&1
$S eval --run "$T/hand/train" --features "$T/hand/features" --labels "$T/hand/export/labels.csv" --json "$T/hand/m.json" > "$T/h4" 2>&1
tensors() { for f in "$1"/*.safetensors; do echo "$(basename "$f")"; $S info --digest "$f" | sed 1d | grep -v metadata; done; }
check '[ "$(tensors "$T/run/features")" = "$(tensors "$T/hand/features")" ] && [ -n "$(tensors "$T/hand/features")" ]' "features differ from extract by hand ($(cat "$T/h1"))"
check 'cmp -s "$T/run/metrics_test.json" "$T/hand/m.json"' "metrics differ from train + eval by hand: $(cat "$T/run/metrics_test.json" "$T/hand/m.json" "$T/h3" "$T/h4")"
check 'tail -n +2 "$T/run/labels/labels.csv" | cmp -s - "$GB/m-tiny-cls/expected/labels.csv" && [ ! -d "$T/run/labels/images" ]' "labels.csv of the run"

# 4. a rerun does nothing; a changed setting is refused and changes nothing
before=$(ls -R "$T/run" | md5sum)
$R --task "$T/cls.json" --fuser moe --out "$T/run" > "$T/r2" 2>&1
check '[ $? -eq 0 ] && grep -q "nothing to do" "$T/r2" && [ "$(ls -R "$T/run" | md5sum)" = "$before" ] && [ $(wc -l < "$T/run/results.csv") -eq 2 ]' "rerun of a complete run: $(cat "$T/r2")"
$R --task "$T/cls.json" --fuser gw --out "$T/run" > "$T/r3" 2>&1
check '[ $? -eq 1 ] && grep -q "reproduce.json: this run was made with fuser .moe.; the command asks for .gw." "$T/r3" && [ "$(ls -R "$T/run" | md5sum)" = "$before" ]' "changed --fuser: $(cat "$T/r3")"
$R --task "$T/cls.json" --fuser moe --out "$T/run" --partition 0.50x_train > "$T/r4" 2>&1
check '[ $? -eq 1 ] && grep -q "partition .default.; the command asks for .0.50x_train." "$T/r4"' "changed --partition: $(cat "$T/r4")"
$R --task "$T/cls.json" --fuser moe --out "$T/run" --size 128 > "$T/r5" 2>&1
check '[ $? -eq 1 ] && grep -q "size .64.; the command asks for .128." "$T/r5"' "changed --size: $(cat "$T/r5")"

# 5. resume: a feature file lost and training not finished -> only those are redone
rm -f "$T/run/features/s003_m-tiny-cls.safetensors" "$T/run/extract.done" "$T/run/train.done" "$T/run/eval.done" "$T/run/results.done"
rm -rf "$T/run/train"
$R --task "$T/cls.json" --fuser moe --out "$T/run" > "$T/r6" 2>&1
check '[ $? -eq 0 ] && grep -q "1 written, 7 already done" "$T/r6" && cmp -s "$T/run/metrics_test.json" "$T/hand/m.json" && [ $(wc -l < "$T/run/results.csv") -eq 2 ]' "resumed run: $(tail -5 "$T/r6")"

# 5b. a stopped training continues (train --resume): extract only (--shard 0/1), then a training stopped
#     after 3 of its 6 steps (train --max-steps 3 by hand into RUNDIR/train), then reproduce: the same
#     head weights and metrics as the uninterrupted run
$R --task "$T/cls.json" --fuser moe --out "$T/st" --shard 0/1 > "$T/p1" 2>&1
$S train --features "$T/st/features" --labels "$T/hand/export/labels.csv" --task cls --fuser moe --out "$T/st/train" \
  --num-classes 3 --ignore-value -100 --batch-size 4 --epochs 3 --warmup-epochs 1 --lr 0.01 --min-lr 1e-5 --eval-every 0 \
  --projection-dim 32 --num-norm-groups 8 --max-steps 3 --quiet > "$T/p2" 2>&1
check 'grep -q "stopped at global step 3" "$T/p2" && [ ! -e "$T/st/train.done" ]' "a training stopped at step 3: $(cat "$T/p1" "$T/p2")"
$R --task "$T/cls.json" --fuser moe --out "$T/st" > "$T/p3" 2>&1
check '[ $? -eq 0 ] && grep -q "train .* --resume" "$T/p3" && grep -q "resuming .* (global step 3)" "$T/p3" &&
       cmp -s "$T/st/train/best.safetensors" "$T/run/train/best.safetensors" && cmp -s "$T/st/metrics_test.json" "$T/hand/m.json"' \
  "the stopped training continued: $(grep -v "^\[" "$T/p3" | tail -8)"

# 6. shards (an array job's tasks), then training once every shard is done; a shared --table
$R --task "$T/cls.json" --fuser moe --out "$T/sh" --shard 0/2 --table "$T/table.csv" > "$T/s0" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/sh/features" | grep -c safetensors) -eq 4 ] && [ ! -e "$T/sh/labels" ] && [ ! -e "$T/sh/train" ]' "--shard 0/2: $(tail -3 "$T/s0")"
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=1 SLURM_ARRAY_TASK_COUNT=2 \
  $R --task "$T/cls.json" --fuser moe --out "$T/sh" --shard auto --table "$T/table.csv" > "$T/s1" 2>&1
check '[ $? -eq 0 ] && [ $(ls "$T/sh/features" | grep -c safetensors) -eq 8 ]' "--shard auto (task 1 of 2): $(tail -3 "$T/s1")"
$R --task "$T/cls.json" --fuser moe --out "$T/sh" --table "$T/table.csv" > "$T/s2" 2>&1
check '[ $? -eq 0 ] && grep -q "0 written, 8 already done" "$T/s2" && cmp -s "$T/sh/metrics_test.json" "$T/hand/m.json" && [ ! -e "$T/sh/results.csv" ]' "after the shards: $(tail -3 "$T/s2")"

# 7. segmentation (mIoU, in percent as eval writes it), into the same table
$R --task "$T/seg.json" --fuser gw --out "$T/seg" --table "$T/table.csv" > "$T/g1" 2>&1
rc=$?
miou=$(sed 's/.*"mIoU": \([0-9.e-]*\).*/\1/' "$T/seg/metrics_test.json")
check '[ $rc -eq 0 ] && [ $(wc -l < "$T/table.csv") -eq 3 ] && grep -q "^m-tiny-seg,gw,default,mIoU,[0-9.]*,42," "$T/table.csv" &&
       [ $(grep -c "^| m-tiny" "$T/table.md") -eq 2 ]' "seg run into --table: $(tail -3 "$T/g1"; cat "$T/table.csv")"
check 'awk -v a="$miou" -v r="$(tail -1 "$T/table.csv" | cut -d, -f5)" "BEGIN { d = a - r; exit !(d < 1e-3 && d > -1e-3) }"' "seg row value is not mIoU $miou"

# 8. bad input: a missing task folder or partition, a preset of another task type
$S reproduce --model "$MODEL" --task "$T/cls.json" --out "$T/x" --geobench "$T/nowhere" > "$T/b1" 2>&1
check '[ $? -eq 1 ] && grep -q "nowhere/classification_v1.0/m-tiny-cls: no such folder" "$T/b1"' "missing task folder: $(cat "$T/b1")"
$R --task "$T/cls.json" --out "$T/x" --partition 0.25x_train > "$T/b2" 2>&1
check '[ $? -eq 1 ] && grep -q "no 0.25x_train_partition.json" "$T/b2" && [ ! -e "$T/x" ]' "missing partition: $(cat "$T/b2")"
sed 's/"type": "cls"/"type": "seg"/; s/accuracy/mIoU/' "$T/cls.json" > "$T/wrong.json"
$R --task "$T/wrong.json" --out "$T/x" > "$T/b3" 2>&1
check '[ $? -eq 1 ] && grep -q "m-tiny-cls: a cls task, but the preset .*wrong.json is seg" "$T/b3" && [ ! -e "$T/x" ]' "preset of another type: $(cat "$T/b3")"
printf '{"task": "t"}' > "$T/broken.json"
$R --task "$T/broken.json" --out "$T/x" > "$T/b4" 2>&1
check '[ $? -eq 2 ] && grep -q "broken.json: .folder. is missing" "$T/b4"' "broken preset: $(cat "$T/b4")"

echo "cli_reproduce.sh: $pass passed, $fail failed"
echo "RESULT $pass $fail"
[ $fail -eq 0 ]
