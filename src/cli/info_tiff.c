// satdifuser info FILE.tif: what a TIFF / GeoTIFF holds (IFD 0, read by io/tiff.c without
// decoding the pixels): size, bands, sample type, layout, and the georeferencing, tag by tag, so
// two files' georeferencing can be compared (a map written by predict and its input).
#include <stdio.h>
#include <string.h>

#include "cli/predict_scene.h"
#include "core/error.h"
#include "io/tiff.h"
#include "models/tiling.h"

int is_tiff_path(const char *path) { return scene_is_tiff(path); }

static void doubles(const char *name, const double *v, int n) {
    if (!n) return;
    printf("  %s", name);
    for (int i = 0; i < n; i++) printf(" %.17g", v[i]);
    printf("\n");
}

int info_tiff(const char *path) {
    TiffReader *r;
    TiffImage t;
    if (tiff_open(path, &r, &t)) {
        fprintf(stderr, "satdifuser info: %s\n", sd_last_error());
        return 1;
    }
    printf("%s: %s%s %dx%d, %d band%s of %s, %s, compression %s, photometric %d\n", path, t.bigtiff ? "BigTIFF" : "TIFF",
           t.big_endian ? " (big-endian)" : "", t.width, t.height, t.bands, t.bands == 1 ? "" : "s",
           npy_dtype_name(t.dtype), t.tiled ? "tiles" : "strips", tiff_compression_name(t.compression), t.photometric);
    if (t.has_geotransform)
        printf("  geotransform %.17g %.17g %.17g %.17g %.17g %.17g\n", t.geotransform[0], t.geotransform[1],
               t.geotransform[2], t.geotransform[3], t.geotransform[4], t.geotransform[5]);
    if (t.epsg) printf("  epsg %d\n", t.epsg);
    if (t.has_nodata) printf("  nodata %.17g\n", t.nodata);
    const TiffGeoTags *g = &t.geo;
    doubles("ModelPixelScale", g->pixel_scale, g->n_pixel_scale);
    doubles("ModelTiepoint", g->tiepoint, g->n_tiepoint);
    doubles("ModelTransformation", g->transformation, g->n_transformation);
    if (g->n_key_directory) {
        printf("  GeoKeyDirectory");
        for (int i = 0; i < g->n_key_directory; i++) printf(" %u", (unsigned)g->key_directory[i]);
        printf("\n");
    }
    doubles("GeoDoubleParams", g->double_params, g->n_double_params);
    if (g->n_ascii_params) {  // as stored, NULs shown as \0
        printf("  GeoAsciiParams \"");
        for (int i = 0; i < g->n_ascii_params; i++) {
            unsigned char ch = (unsigned char)g->ascii_params[i];
            if (ch == 0) printf("\\0");
            else if (ch < 32 || ch > 126 || ch == '"' || ch == '\\') printf("\\x%02x", ch);
            else putchar(ch);
        }
        printf("\"\n");
    }
    tiff_close(r);
    return 0;
}
