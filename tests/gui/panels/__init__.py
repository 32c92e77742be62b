"""Tests of eegvlm_desktop.gui.panels."""
