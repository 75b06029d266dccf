"""Calibration: whitening and BERT-flow behind one fit/transform/save/load interface."""
