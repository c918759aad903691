#!/usr/bin/env perl
# Removes the indentation common to every line of each Rust code block in
# mdBook's HTML output. Code is included from the sources by anchors, and an
# anchor inside a function keeps the function's indentation; mdBook (0.4)
# includes it as it is, which pushes the code off the right of the page.
# Lines that begin with markup (mdBook's hidden lines) count as unindented,
# so such a block is left alone.
use strict;
use warnings;

sub dedent {
    my ($code) = @_;
    my @lines = split /\n/, $code, -1;
    my $min;
    for my $line (@lines) {
        next unless $line =~ /\S/;
        my ($indent) = $line =~ /^( *)/;
        $min = length $indent if !defined $min || length $indent < $min;
    }
    return $code unless $min;
    s/^ {$min}// for @lines;
    return join "\n", @lines;
}

local $/;
for my $file (@ARGV) {
    open my $in, '<', $file or die "$file: $!";
    my $html = <$in>;
    close $in;
    my $changed = $html =~ s{(<code class="language-rust[^"]*">)(.*?)(</code>)}{$1 . dedent($2) . $3}gse;
    next unless $changed;
    open my $out, '>', $file or die "$file: $!";
    print $out $html;
    close $out;
}
