"""The dataset as pictures: a self-contained HTML report of every stage."""
