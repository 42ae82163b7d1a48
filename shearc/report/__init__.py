"""`shearc report RUN_DIR`: what a run did, as tables and PNG plots.

    shearc report runs/tiny-drpruning            # plots into runs/tiny-drpruning/report/
"""
