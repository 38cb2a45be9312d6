"""The built-in co-training world: human and robot episodes of the same tabletop tasks.

``generate_world`` renders both embodiments and writes LeRobot v3.0 datasets;
``train_world`` trains a small VLA-shaped policy on them (co-trained and robot-only
recipes, checkpoints at several steps); ``build_world`` does both with caching.
"""
