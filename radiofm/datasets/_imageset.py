"""`ImageSet`: the images of one data set with a table describing each of them."""

import numpy as np
from astropy.table import QTable

__all__ = ["ImageSet"]


class ImageSet:
    """Equal-sized images with one table row per image.

    Parameters
    ----------
    name : str
        Data set name, e.g. ``"MBFRConfident"``.
    images : `~numpy.ndarray`
        (N, H, W) pixels (uint8 display images or float32 sky brightness, NaN = blank).
    table : `~astropy.table.QTable`
        N rows; columns depend on the data set (``label``, ``class_name``, ``split``,
        ``sky_center``, ``redshift``, ...).
    class_names : sequence of str, optional
        Names of the integer ``label`` values, in order.
    pixel_scale : `~astropy.units.Quantity`, optional
        Angular size of a pixel, where the data set has one.
    wcs : list of `~astropy.wcs.WCS`, optional
        The celestial WCS of each image, where the data set has them.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from radiofm.datasets import ImageSet
    >>> images = np.zeros((3, 8, 8), dtype=np.uint8)
    >>> table = QTable({"label": [0, 1, 1], "split": ["train", "test", "test"]})
    >>> data = ImageSet("toy", images, table, class_names=["a", "b"])
    >>> len(data.split("test"))
    2
    >>> sorted_by_class = ImageSet("toy", np.zeros((4, 8, 8)), QTable(
    ...     {"label": [0, 0, 1, 1], "split": ["train"] * 4}))
    >>> len(sorted_by_class.head(1)), len(sorted_by_class.head(1, by="label"))
    (1, 2)
    """

    def __init__(self, name, images, table, *, class_names=(), pixel_scale=None, wcs=None):
        images = np.asarray(images)
        if images.ndim != 3:
            raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
        if len(table) != len(images):
            raise ValueError(f"{len(images)} images but {len(table)} table rows")
        self.name = name
        self.images = images
        self.table = QTable(table)
        self.class_names = tuple(class_names)
        self.pixel_scale = pixel_scale
        if wcs is not None and len(wcs) != len(images):
            raise ValueError(f"{len(images)} images but {len(wcs)} WCS")
        self.wcs = wcs

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        splits = ""
        if "split" in self.table.colnames:
            names, counts = np.unique(np.asarray(self.table["split"]), return_counts=True)
            splits = ", " + ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
        return f"<ImageSet {self.name}: {len(self)} images of {self.images.shape[1:]}{splits}>"

    @property
    def labels(self):
        """The integer ``label`` column as an array."""
        return np.asarray(self.table["label"])

    def subset(self, selection):
        """The images chosen by a boolean mask or an index array, as a new `ImageSet`."""
        selection = np.asarray(selection)
        if selection.dtype == bool:
            selection = np.flatnonzero(selection)
        wcs = None if self.wcs is None else [self.wcs[k] for k in selection]
        return ImageSet(self.name, self.images[selection], self.table[selection],
                        class_names=self.class_names, pixel_scale=self.pixel_scale, wcs=wcs)

    def split(self, *names):
        """The images of one or more splits (``"train"``, ``"valid"``, ``"test"``)."""
        if "split" not in self.table.colnames:
            raise ValueError(f"data set {self.name} has no split column")
        return self.subset(np.isin(np.asarray(self.table["split"]), names))

    def head(self, count, *, by=None):
        """At most ``count`` images of each split, evenly spaced through it (all of them
        when ``count`` is None), for quick runs on small subsets.

        Parameters
        ----------
        count : int or None
            Images per split (per split and ``by`` value when ``by`` is given).
        by : str, optional
            A table column (e.g. ``"label"``) whose every value keeps its own ``count``
            images in each split, so a small subset still holds every class.
        """
        if count is None:
            return self
        splits = np.asarray(self.table["split"] if "split" in self.table.colnames
                            else np.zeros(len(self))).astype(str)
        if by is not None:
            splits = np.char.add(np.char.add(splits, "/"),
                                 np.asarray(self.table[by]).astype(str))
        keep = np.zeros(len(self), dtype=bool)
        for name in np.unique(splits):
            members = np.flatnonzero(splits == name)
            picks = np.linspace(0, len(members) - 1, min(count, len(members))).round()
            keep[members[picks.astype(int)]] = True
        return self.subset(keep)
