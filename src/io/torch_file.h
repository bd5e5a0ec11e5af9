// PyTorch checkpoints (.bin, .pt, .pth, .ckpt) read without Python and without
// executing anything. Two containers (torch/serialization.py):
//   - zip (torch >= 1.6, the default): <prefix>/data.pkl is the pickled object,
//     each storage is the stored record <prefix>/data/<key> (64-byte aligned),
//     <prefix>/byteorder says "little" or "big" (absent: little). The prefix is
//     whatever folder the first entry is in ("archive", or the file's stem).
//   - legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): five pickles
//     in a row - magic number, protocol version 1001, sys_info, the object, the
//     sorted storage keys - then each storage as an int64 element count and its
//     raw little-endian bytes, in the order of the keys.
// The object is read with the restricted unpickler (io/pickle.h); tensors come from
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter over the storage classes
// (FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage,
// ShortStorage, CharStorage, ByteStorage, BoolStorage). Every size, offset and stride
// is checked against its storage and every storage against its record.
#ifndef SD_TORCH_FILE_H
#define SD_TORCH_FILE_H

#include <stddef.h>

#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/zip.h"

typedef struct {
    char *path;
    unsigned char *map;
    size_t map_size;
    int is_zip;
    ZipArchive zip;
    int big_endian;    // storages hold big-endian data (zip "byteorder" record)
    PickleDoc doc;
    PyValue *root;     // the unpickled object
} TorchFile;

// 1 if the bytes look like a PyTorch checkpoint (zip archive or legacy pickle).
int torch_file_sniff(const unsigned char *buf, size_t size);
// What the first bytes of the file at path say: 1 a PyTorch checkpoint, 2 safetensors, 0 neither
// (or too short), -1 it cannot be opened.
int torch_file_path_kind(const char *path);
int torch_file_open(TorchFile *tf, const char *path);
void torch_file_close(TorchFile *tf);

// The value at a dotted path ("decoder_net", "state_dict", "optimizer_states.0"): dict keys
// (which may themselves hold dots: the longest matching key wins), list indices, and the
// items or state of placeholder objects. NULL with a message naming the path if absent.
const PyValue *torch_file_find(const TorchFile *tf, const char *key);

// Opens a checkpoint as a SafeTensors view: every tensor under `key` (NULL or "": the whole
// object), named by its dotted path below it. Contiguous little-endian tensors point into the
// file mapping (as safetensors does); views with other strides and big-endian data are copied.
// Non-tensor entries directly under the key (epoch, config, ...) go to st->metadata as short
// renderings. Called by st_open for files that are not safetensors.
int st_open_torch(SafeTensors *st, const char *path, const char *key);
// A checkpoint's weights: for a PyTorch file whose top level has a "state_dict" dict (a
// Lightning .ckpt, many training scripts) the tensors under it, else every tensor; other
// files as st_open.
int st_open_weights(SafeTensors *st, const char *path);

#endif
