"""Controllers: they get the state they drive, the panels and a notify callable; none imports
main_window.
"""
