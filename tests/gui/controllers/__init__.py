"""Tests of eegvlm_desktop.gui.controllers."""
