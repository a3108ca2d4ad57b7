# Loads the Vagrantfile with a stand-in for Vagrant that records every
# configuration call, and prints them as JSON: [path, args, keyword args],
# the path naming the machine (define) and method chain that led to a call.
require 'json'

CALLS = []

class Recorder
  def initialize(path)
    @path = path
  end

  def method_missing(name, *args, **kw, &blk)
    method = name.to_s
    CALLS << { path: @path + [method], args: args, kw: kw }
    child = Recorder.new(@path + [method] + (method == 'define' ? [args.first.to_s] : []))
    blk&.call(child)
    child
  end

  def respond_to_missing?(*)
    true
  end
end

module Vagrant
  def self.require_version(*); end

  def self.configure(_version)
    yield Recorder.new([])
  end
end

load ARGV.fetch(0)
puts JSON.generate(CALLS)
