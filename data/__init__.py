"""The data layer beneath training and evaluation: dataset loaders, splits, a team's own labelled files.

Both :mod:`voce.training` and :mod:`voce.eval` read labelled data through here, so a
split or a label mapping is defined once.  Nothing here imports training or eval.
"""
