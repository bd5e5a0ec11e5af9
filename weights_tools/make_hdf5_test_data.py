#!/usr/bin/python3
"""HDF5 test files for src/io/hdf5.c, written with Debian's python3-h5py (3.7, HDF5 1.10).

Every file tests/data/hdf5/<name>.h5 comes with its expected arrays as NPY files written by
numpy (tests/data/hdf5/<name>/<dataset path with '/' -> '~'>.npy, values in little-endian
order as numpy holds them) and an index.json listing, per file: the datasets (name, numpy
dtype as stored in the file, shape, npy file), the attributes (name -> expected value or the
npy of a numeric one) and the datasets the reader must refuse with the feature named.
Run: /usr/bin/python3 weights_tools/make_hdf5_test_data.py   (deterministic: fixed seed)
"""
import json
import os
import shutil

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "hdf5")
rng = np.random.default_rng(19)
index = {}


def arr(dtype, shape):
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "f":
        v = rng.standard_normal(n) * 100
        v[:3] = [np.inf, -0.0, 1e-3][: min(3, n)]
        return v.astype(dt).reshape(shape)
    info = np.iinfo(dt)
    v = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=np.int64 if info.min < 0 else np.uint64)
    v[0] = info.min
    if n > 1:
        v[1] = info.max
    return v.astype(dt).reshape(shape)


class Writer:
    def __init__(self, name, **kw):
        self.name = name
        self.path = os.path.join(OUT, name + ".h5")
        self.f = h5py.File(self.path, "w", **kw)
        self.entry = {"datasets": [], "attributes": [], "refused": []}
        os.makedirs(os.path.join(OUT, name), exist_ok=True)

    def npy(self, key, a):
        fn = key.replace("/", "~") + ".npy"
        np.save(os.path.join(OUT, self.name, fn), np.asarray(a, order="C").astype(a.dtype.newbyteorder("=")))
        return self.name + "/" + fn

    def ds(self, key, a, **kw):
        self.f.create_dataset(key, data=a, **kw)
        self.entry["datasets"].append({"name": key, "dtype": a.dtype.str, "shape": list(a.shape),
                                       "npy": self.npy(key, a)})

    def ds_partial(self, key, shape, dtype, region, value, **kw):
        # chunked dataset written only in `region`: the chunks never written read as 0
        d = self.f.create_dataset(key, shape=shape, dtype=dtype, **kw)
        d[region] = value
        full = np.zeros(shape, dtype)
        full[region] = value
        self.entry["datasets"].append({"name": key, "dtype": full.dtype.str, "shape": list(shape),
                                       "npy": self.npy(key, full)})

    def attr(self, obj, key, value, expect=None):
        o = self.f[obj]
        o.attrs[key] = value
        e = {"object": obj, "name": key}
        if isinstance(value, str):
            e["string"] = value
        elif isinstance(value, bytes):
            e["string"] = value.decode("latin-1")
        else:
            a = np.asarray(value)
            e["npy"] = self.npy("attr~" + obj.strip("/").replace("/", "~") + "~" + key, a)
            e["dtype"] = a.dtype.str
            e["shape"] = list(a.shape)
        self.entry["attributes"].append(e)

    def refuse(self, key, feature):
        self.entry["refused"].append({"name": key, "feature": feature})

    def close(self):
        self.f.close()
        index[self.name + ".h5"] = self.entry


DTYPES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]


def dtypes_file(name, libver):
    w = Writer(name, libver=libver)
    for t in DTYPES:
        for order in "<>":
            if t[1] == "1" and order == ">":
                continue
            dt = np.dtype(order + t if t[1] != "1" else t)
            w.ds("%s_%s" % ("le" if order == "<" else "be", t), arr(dt, (3, 5)))
    w.ds("scalar_f8", np.array(2.5, dtype="<f8"))
    w.ds("vector_i4", np.arange(-3, 4, dtype=">i4"))
    w.ds("cube_u2", arr("<u2", (2, 3, 4)))
    w.attr("/", "pickle", "b'\\x80\\x04\\x95 caf\\xc3\\xa9'")        # vlen str, like geobench's
    w.attr("/", "unicode", "caf\u00e9 \u2603")
    w.attr("/", "fixed", np.bytes_(b"fixed-len"))
    w.attr("/", "count", np.int64(-7))
    w.attr("/", "scale", np.array([0.5, 1.5, -2.0], dtype=">f4"))
    w.attr("le_f4", "units", "reflectance")
    w.attr("le_f4", "range", np.array([[1, 2], [3, 4]], dtype="<u2"))
    w.close()


def layouts_file(name, libver):
    w = Writer(name, libver=libver)
    a = arr("<f4", (37, 29))
    w.ds("compact", arr("<i2", (4, 6)), **{})
    w.f.pop("compact")
    # h5py has no layout keyword: build a compact dataset through the low-level API
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    c = arr("<i2", (4, 6))
    sid = h5py.h5s.create_simple(c.shape)
    did = h5py.h5d.create(w.f.id, b"compact", h5py.h5t.STD_I16LE, sid, dcpl=dcpl)
    did.write(h5py.h5s.ALL, h5py.h5s.ALL, c)
    w.entry["datasets"][-1]["npy"] = w.npy("compact", c)
    w.ds("contiguous", a)
    w.ds("chunked", a, chunks=(8, 7))
    w.ds("chunked_single", a, chunks=a.shape)
    w.ds("gzip", a, chunks=(10, 10), compression="gzip", compression_opts=6)
    w.ds("gzip_single", a, chunks=a.shape, compression="gzip")
    w.ds("shuffle_gzip", arr(">i8", (33, 17)), chunks=(8, 8), shuffle=True, compression="gzip")
    w.ds("fletcher", arr("<u2", (20, 20)), chunks=(6, 9), fletcher32=True)
    w.ds("all_filters", arr(">f8", (25, 19)), chunks=(7, 5), shuffle=True, compression="gzip",
         compression_opts=9, fletcher32=True)
    w.ds("rank3", arr("<i4", (5, 6, 7)), chunks=(2, 4, 3), compression="gzip")
    w.ds("many_chunks", arr("u1", (2050,)), chunks=(2,))            # fixed array: paged (> 1024 entries)
    w.ds("many_chunks_gzip", arr("<i2", (1100,)), chunks=(1,), compression="gzip")
    w.ds_partial("sparse", (40, 40), "<f4", (slice(0, 10), slice(30, 40)), 7.0, chunks=(10, 10))
    w.ds("empty", np.zeros((0, 3), "<f4"))
    # groups: nested, and one with enough links to be a dense group under libver latest
    g = w.f.create_group("grp/sub")
    for i in range(20):
        w.ds("grp/many/d%02d" % i, np.full((2,), i, dtype="<i4"))
    w.ds("grp/sub/leaf", arr("<f8", (3,)))
    for i in range(12):   # dense attributes (more than 8 on one object) under libver latest
        w.attr("grp/sub/leaf", "a%02d" % i, "value %d" % i)
    del g
    # refused: a filter the reader does not have, and (latest) an unlimited dimension
    w.f.create_dataset("scaleoffset", data=np.arange(100, dtype="<i4").reshape(10, 10), chunks=(5, 5),
                       scaleoffset=0)
    w.refuse("scaleoffset", "filter 6")
    d = w.f.create_dataset("resizable", shape=(10, 4), maxshape=(None, 4), dtype="<f4", chunks=(5, 4))
    d[...] = 1
    if libver == "latest":
        w.refuse("resizable", "extensible array")
    else:
        w.entry["datasets"].append({"name": "resizable", "dtype": "<f4", "shape": [10, 4],
                                    "npy": w.npy("resizable", np.ones((10, 4), "<f4"))})
    w.close()


# ---- GEO-Bench-style task folders (tests/data/geobench/<task>) ---------------------------------
# Written as geobench's write_sample_hdf5 does (geobench/dataset.py @4777011): one root dataset per
# band named by the band, the label band as dataset `label`, and the root attribute `pickle` =
# str(pickle.dumps(attr_dict)) with each band's attributes, `bands_order` and, for classification,
# `label`. geobench's classes are stood in for by classes of the same module and name (the pickle
# stores only those). Beside each task, expected/: the export as numpy computes it (images float32
# (C, H, W), masks uint8, labels.csv without its first comment line).
import pickle
import sys
import types

GB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "geobench")


def _standin_module(name, classes):
    mod = types.ModuleType(name)
    for cls_name in classes:
        cls = type(cls_name, (), {"__module__": name, "__init__": lambda self, **kw: self.__dict__.update(kw)})
        setattr(mod, cls_name, cls)
    sys.modules[name] = mod
    return mod


sys.modules["geobench"] = types.ModuleType("geobench")
gbd = _standin_module("geobench.dataset", ["SpectralBand", "Sentinel2", "TaskSpecifications"])
gbl = _standin_module("geobench.label", ["Classification", "MultiLabelClassification", "SemanticSegmentation"])
sys.modules["geobench"].dataset = gbd
sys.modules["geobench"].label = gbl


def write_sample(path, bands, label_band, label):
    attr = {}
    order = []
    with h5py.File(path, "w") as fp:
        items = list(bands.items()) + ([("label", label_band)] if label_band is not None else [])
        if label is not None:
            attr["label"] = label
        for name, data in items:
            fp.create_dataset(name=name, data=data)
            info = gbd.SpectralBand(name=name, alt_names=(name.lower(),), spatial_resolution=10, wavelength=0.5)
            attr[name] = dict(date=None, date_id=None, spatial_resolution=10, band_info=info, meta_info=None,
                              transform=None, crs=None)
            order.append(name)
        attr["bands_order"] = order
        fp.attrs["pickle"] = str(pickle.dumps(attr))


def task_folder(name, kind, n, band_names, dtype, classes, seed):
    r = np.random.default_rng(seed)
    d = os.path.join(GB, name)
    exp = os.path.join(d, "expected")
    os.makedirs(os.path.join(exp, "images"))
    if kind == "seg":
        os.makedirs(os.path.join(exp, "masks"))
    names = ["s%03d_%s" % (i, name) for i in range(n)]
    splits = {"train": names[: n - 2], "valid": names[n - 2: n - 1], "test": names[n - 1:]}
    label_map = {}
    stats = {}
    rows = []
    for i, s in enumerate(names):
        bands = {}
        for b in band_names:
            if dtype == "int16":
                bands[b] = r.integers(0, 4000, size=(8, 8)).astype(np.int16)
            else:
                bands[b] = r.random((8, 8)).astype(np.float32)
        split = "train" if s in splits["train"] else "val" if s in splits["valid"] else "test"
        mask = None
        label = None
        if kind == "cls":
            c = i % len(classes)
            label = np.int64(c) if i == 0 else c         # a numpy scalar once, else an int
            label_map.setdefault(str(c), []).append(s)
            stats[s] = [1.0 if k == c else 0.0 for k in range(len(classes))]
            rows.append("%s,%s,%d" % (s, split, c))
        elif kind == "multilabel":
            v = (r.random(len(classes)) < 0.4).astype(np.int64)
            v[i % len(classes)] = 1
            label = v                                     # a numpy array, as bigearthnet's converter
            stats[s] = [float(x) for x in v]
            rows.append("%s,%s,%s" % (s, split, ";".join(str(k) for k in range(len(classes)) if v[k])))
        else:
            mask = r.integers(0, len(classes), size=(8, 8)).astype(np.int64)
            stats[s] = [float((mask == k).mean()) for k in range(len(classes))]
            np.save(os.path.join(exp, "masks", s + ".npy"), mask.astype(np.uint8))
            rows.append("%s,%s,masks/%s.npy" % (s, split, s))
        write_sample(os.path.join(d, s + ".hdf5"), bands, mask, label)
        np.save(os.path.join(exp, "images", s + ".npy"), np.stack([bands[b] for b in band_names]).astype(np.float32))
    with open(os.path.join(d, "default_partition.json"), "w") as f:
        json.dump(splits, f, indent=2)
    half = {"train": splits["train"][: (n - 2) // 2], "valid": splits["valid"], "test": splits["test"]}
    with open(os.path.join(d, "0.50x_train_partition.json"), "w") as f:
        json.dump(half, f, indent=2)
    if kind == "cls":
        with open(os.path.join(d, "label_map.json"), "w") as f:
            json.dump(label_map, f, indent=2)
    with open(os.path.join(d, "label_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    lt = {"cls": gbl.Classification(n_classes=len(classes), class_names=classes),
          "multilabel": gbl.MultiLabelClassification(n_classes=len(classes), class_name=classes),
          "seg": gbl.SemanticSegmentation(n_classes=len(classes), class_names=classes)}[kind]
    with open(os.path.join(d, "task_specs.pkl"), "wb") as f:
        pickle.dump(gbd.TaskSpecifications(dataset_name=name, patch_size=(8, 8), n_time_steps=1,
                                           bands_info=[], label_type=lt), f)
    head = ""
    if classes:
        head = "# classes: " + ",".join(c.replace(",", ";") for c in classes) + "\n"
    with open(os.path.join(exp, "labels.csv"), "w") as f:
        f.write(head + "image,split,label\n" + "\n".join(rows) + "\n")


def geobench_tasks():
    if os.path.isdir(GB):
        shutil.rmtree(GB)
    task_folder("m-tiny-cls", "cls", 8, ["02 - Blue", "03 - Green", "04 - Red"], "int16",
                ["Forest", "River", "Sea, Lake"], 1)
    task_folder("m-tiny-multilabel", "multilabel", 6, ["B02", "B03", "B04", "B08"], "float32",
                ["a", "b", "c", "d", "e"], 2)
    task_folder("m-tiny-seg", "seg", 5, ["Red", "Green", "Blue"], "float32", ["water", "tree", "field", "road"], 3)


def main():
    geobench_tasks()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    dtypes_file("dtypes_earliest", "earliest")
    dtypes_file("dtypes_v18", ("v108", "v108"))
    dtypes_file("dtypes_latest", "latest")
    layouts_file("layouts_earliest", "earliest")
    layouts_file("layouts_latest", "latest")
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    for name in index:
        f = h5py.File(os.path.join(OUT, name), "r")
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes, superblock",
              f.id.get_create_plist().get_version()[0])


if __name__ == "__main__":
    main()
