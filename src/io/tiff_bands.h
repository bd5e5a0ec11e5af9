// GeoTIFF band descriptions (GDAL_METADATA tag 42112, <Item name="DESCRIPTION" sample="i">),
// for `extract --bands` by name (io/tiff_bands.c).
#ifndef SD_TIFF_BANDS_H
#define SD_TIFF_BANDS_H

// names[i] (malloc'd, or NULL) is band i's description (0-based), for i < max; *found is one
// past the highest band described (0: the file has no descriptions). Fails, naming the file,
// only when the file is not a TIFF or its IFD 0 / metadata tag lies outside it.
int tiff_band_names(const char *path, char **names, int max, int *found);

#endif
