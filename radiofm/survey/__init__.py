"""Survey scale: annotate many images on a Dask cluster, index them, search by example.

`annotate_many` runs `annotate_image` over a list of images on a `distributed` cluster (a
LocalCluster by default, or any Client: dask-jobqueue on SLURM or PBS), resumably, with a
manifest, and adds every image's tiles to a survey index. `read_index` reads the index;
`similar` and `outliers` answer "more like this one" and "what is odd here". Needs the
``survey`` extra (dask[distributed], pyarrow).
"""

from ._annotate import FINDERS, TABLE_EXTENSIONS, annotate_image, image_stem, output_paths
from ._bulk import BLOCK_TILES, annotate_many, read_image_list
from ._index import SurveyIndex, add_to_index, read_index
from ._search import outliers, read_cutouts, similar, write_matches

__all__ = [
    "BLOCK_TILES", "FINDERS", "SurveyIndex", "TABLE_EXTENSIONS", "add_to_index", "annotate_image",
    "annotate_many", "image_stem", "outliers", "output_paths", "read_cutouts",
    "read_image_list", "read_index", "similar", "write_matches",
]
