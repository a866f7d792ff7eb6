"""Changes the garbage collector's thresholds at import: the forker's GC settings must not move."""

import gc

gc.set_threshold(*(threshold * 10 for threshold in gc.get_threshold()))
