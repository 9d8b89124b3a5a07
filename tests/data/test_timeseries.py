"""User time series from CSV/Parquet: loading, masks, splits, and clear errors."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from nodezoo.data.timeseries import TimeSeriesDataModule, collate_series, series_from_frame


def frame() -> pd.DataFrame:
    rows = []
    for sid, n in (("a", 5), ("b", 3), ("c", 4), ("d", 6)):
        for i in range(n):
            rows.append({"series_id": sid, "time": 10.0 + 0.5 * i**1.5, "u": i, "v": -i})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # rows in any order
    df.loc[(df.series_id == "a") & (df.u == 1), "v"] = np.nan  # one missing value
    return df


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_loads_pads_and_masks(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    df = frame()
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    dm = TimeSeriesDataModule(str(path), target_fraction=0.25, val_fraction=0.25, batch_size=8)
    assert dm.obs_dim == 2
    assert len(dm.train_items) == 3 and len(dm.val_items) == 1
    items = {len(i["obs_t"]) + len(i["target_t"]): i for i in dm.train_items + dm.val_items}
    a = items[5]
    assert len(a["target_t"]) == math.ceil(0.25 * 5) == 2
    assert a["obs_t"][0] == 0.0 and torch.all(a["obs_t"][1:] > a["obs_t"][:-1])  # relative, sorted
    assert a["obs_mask"].tolist()[1] == [True, False]  # the missing value is masked
    batch = next(iter(dm.train_dataloader()))
    assert batch["obs_mask"].shape == batch["obs_x"].shape  # per-value masks
    assert batch["obs_x"].shape[0] == 3


def test_split_is_seeded_and_disjoint(tmp_path):
    path = tmp_path / "d.csv"
    frame().to_csv(path, index=False)
    val_ids = []
    for seed in (0, 0, 1, 2, 3):
        dm = TimeSeriesDataModule(str(path), val_fraction=0.5, seed=seed)
        dm.setup()
        ids = lambda items: {len(i["obs_t"]) + len(i["target_t"]) for i in items}
        assert not ids(dm.train_items) & ids(dm.val_items)
        val_ids.append(ids(dm.val_items))
    assert val_ids[0] == val_ids[1] and len({frozenset(v) for v in val_ids}) > 1


def test_errors_name_the_problem(tmp_path):
    df = frame()
    with pytest.raises(ValueError, match=r"Missing column.*'value'"):
        series_from_frame(df, value_columns=["value"])
    bad = df.astype({"u": object})
    bad.iloc[2, bad.columns.get_loc("u")] = "oops"
    with pytest.raises(ValueError, match="non-numeric value 'oops'"):
        series_from_frame(bad)
    empty = df.copy()
    empty.loc[empty.series_id == "b", ["u", "v"]] = np.nan
    with pytest.raises(ValueError, match="'b' has no observed values"):
        series_from_frame(empty)
    dup = pd.concat([df, df.iloc[:1]])
    with pytest.raises(ValueError, match="same time"):
        series_from_frame(dup)
    with pytest.raises(ValueError, match="no rows"):
        series_from_frame(df.iloc[:0])
    with pytest.raises(ValueError, match="unknown file type"):
        TimeSeriesDataModule(str(tmp_path / "x.xlsx")).setup()
    with pytest.raises(FileNotFoundError):
        TimeSeriesDataModule(str(tmp_path / "missing.csv")).setup()


def test_collate_pads_with_finite_times():
    items = [
        {
            "obs_t": torch.tensor([0.0, 1.0]),
            "obs_x": torch.ones(2, 1),
            "target_t": torch.tensor([2.0]),
            "target_x": torch.ones(1, 1),
        },
        {
            "obs_t": torch.tensor([0.5]),
            "obs_x": torch.ones(1, 1),
            "target_t": torch.tensor([3.0, 4.0]),
            "target_x": torch.ones(2, 1),
        },
    ]
    batch = collate_series(items)
    assert batch["obs_t"].tolist() == [[0.0, 1.0], [0.5, 0.5]]
    assert batch["obs_mask"].tolist() == [[True, True], [True, False]]
    assert batch["target_mask"].tolist() == [[True, False], [True, True]]
