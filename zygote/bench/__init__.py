"""``airflow zygote bench``: stock Airflow parsing versus zygote parsing, interleaved round by round.

Nothing here is imported by the server or the client; the package only drives them from outside,
the way an operator would, so the figures reflect what a deployment would see.
"""
