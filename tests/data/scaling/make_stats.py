# Reference statistics for tests/cli_scaling.sh, computed with numpy (not with satdifuser):
# np.percentile(float64 values, p) (method 'linear', numpy 1.24) and min/max, per band, leaving
# out NaN and GDAL nodata pixels. Run from the repository root: /usr/bin/python3 tests/data/scaling/make_stats.py
import json
import numpy as np

D = "../shared/data"
def band_values(a, nodata):
    a = a.astype(np.float64)
    v = a[~np.isnan(a)]
    return v[v != nodata] if nodata is not None else v

def write(name, bands, fn):
    lo, hi = zip(*[fn(b) for b in bands])
    with open("tests/data/scaling/%s.json" % name, "w") as f:
        json.dump({"min": [float(x) for x in lo], "max": [float(x) for x in hi]}, f)

red = np.load(D + "/tiff/rio-tiler/red.npy")             # (1, 259, 255) uint16, nodata 0
dem = np.load(D + "/npy/eo-learn/DEM.npy")[:, :, 0]      # (101, 100) float32, 664..801
col = np.load(D + "/tiff/rio-tiler/colorado_CL_1.npy")   # (3, 232, 383) uint8
write("red_p2_98", [band_values(red[0], 0)], lambda v: (np.percentile(v, 2), np.percentile(v, 98)))
write("red_minmax", [band_values(red[0], 0)], lambda v: (v.min(), v.max()))
write("dem_p2_98", [band_values(dem, None)], lambda v: (np.percentile(v, 2), np.percentile(v, 98)))
write("dem_minmax", [band_values(dem, None)], lambda v: (v.min(), v.max()))
write("colorado_p1_99", [band_values(col[k], None) for k in range(3)],
      lambda v: (np.percentile(v, 1), np.percentile(v, 99)))
# pixels above 4095 (what --scale auto clips in a uint16 TIFF), for the warning's count
print("red.tif above 4095:", int((red > 4095).sum()), "of", red.size)
print("import-tiff-test1 above 4095:", int((np.load(D + "/tiff/eo-learn/import-tiff-test1.npy") > 4095).sum()))
