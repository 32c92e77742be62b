"""Tests of eegvlm_desktop.gui.views."""
